"""Offline question answering over a document corpus, with citations.

load -> chunk -> embed -> index -> retrieve -> answer -> cite

The public names load their modules on first use, so a command imports only what it needs (`rag search` never
imports the answering chain).
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

from rag._offline import set_offline_env

set_offline_env()

_WHERE = {
    "Answer": "rag.answer",
    "Citation": "rag.cite",
    "Client": "rag.client",
    "turns": "rag.condense",
    "QueryParams": "rag.config",
    "Settings": "rag.config",
    "load_settings": "rag.config",
    "Passage": "rag.context",
    "Conversation": "rag.conversations",
    "Engine": "rag.engine",
    "ConfigError": "rag.errors",
    "ConversationsUnavailableError": "rag.errors",
    "InputError": "rag.errors",
    "RagError": "rag.errors",
    "StoreUnavailableError": "rag.errors",
    "IngestReport": "rag.index",
    "LexicalIndex": "rag.lexical",
    "Document": "rag.load",
    "Hit": "rag.retrieve",
    "Way": "rag.whole",
    "claim_stands": "rag.cite",
}
__all__ = [
    "Answer",
    "Citation",
    "Client",
    "ConfigError",
    "Conversation",
    "ConversationsUnavailableError",
    "Document",
    "Engine",
    "Hit",
    "IngestReport",
    "InputError",
    "LexicalIndex",
    "Passage",
    "QueryParams",
    "RagError",
    "Settings",
    "StoreUnavailableError",
    "Way",
    "claim_stands",
    "load_settings",
    "turns",
]
if set(__all__) != set(_WHERE):
    raise ImportError("rag.__all__ and its lazy table disagree")

if TYPE_CHECKING:
    from rag.answer import Answer
    from rag.cite import Citation, claim_stands
    from rag.client import Client
    from rag.condense import turns
    from rag.config import QueryParams, Settings, load_settings
    from rag.context import Passage
    from rag.conversations import Conversation
    from rag.engine import Engine
    from rag.errors import ConfigError, ConversationsUnavailableError, InputError, RagError, StoreUnavailableError
    from rag.index import IngestReport
    from rag.lexical import LexicalIndex
    from rag.load import Document
    from rag.retrieve import Hit
    from rag.whole import Way


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'rag' has no attribute {name!r}")
    value = getattr(import_module(_WHERE[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
