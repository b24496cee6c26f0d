"""Offline question answering over a document corpus, with citations.

load -> chunk -> embed -> index -> retrieve -> answer -> cite
"""

from rag._offline import set_offline_env

set_offline_env()

from rag.answer import Answer  # noqa: E402
from rag.cite import Citation  # noqa: E402
from rag.config import QueryParams, Settings, load_settings  # noqa: E402
from rag.context import Passage  # noqa: E402
from rag.engine import Engine  # noqa: E402
from rag.errors import RagError  # noqa: E402
from rag.index import IngestReport  # noqa: E402
from rag.retrieve import Hit  # noqa: E402

__all__ = ["Answer", "Citation", "Engine", "Hit", "IngestReport", "Passage", "QueryParams", "RagError", "Settings", "load_settings"]
