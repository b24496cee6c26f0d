"""Follow-ups: rewrite a question that leans on the conversation into one that stands alone."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING

from langchain_core.output_parsers import StrOutputParser

from rag.llm import NoModel, with_deadline
from rag.prompt import CONDENSE, NOT_FOUND
from rag.text import count_tokens, strip_markers

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel

log = logging.getLogger(__name__)

History = list[tuple[str, str]]  # (user, assistant) turns, oldest first
_MAX_TURNS = 2
_MAX_QUESTION_TOKENS = 100  # earlier questions and answers are clipped: the rewrite needs their topic, not all of them
_MAX_ANSWER_TOKENS = 60


def turns(messages: Iterable[tuple[str, str]]) -> History:
    """A chat's (role, text) messages as (user, assistant) turns: each assistant reply paired with the user message
    before it; other roles, and a reply with no question before it, are left out (the chat's and the API's history)."""
    out, user = [], None
    for role, text in messages:
        if role == "user":
            user = text
        elif role == "assistant" and user is not None:
            out.append((user, text))
            user = None
    return out


def fallback(question: str, history: History) -> str:
    """Without a model: the follow-up plus the previous question, so retrieval sees the topic."""
    if not history:
        return question
    return f"{question} (follow-up to: {history[-1][0].strip()})"


def condense(question: str, history: History, llm: BaseChatModel | NoModel, timeout: float = 60.0) -> str:
    """A standalone question: the model's rewrite when it gives a usable one, the fallback otherwise (always without
    a model)."""
    if not history:
        return question
    if isinstance(llm, NoModel):
        return fallback(question, history)
    lines = transcript(history)
    try:
        chain = CONDENSE | llm.bind(max_tokens=60) | StrOutputParser()
        raw = "".join(with_deadline(chain.stream({"history": "\n".join(lines), "question": question}), timeout))
    except Exception as exc:  # a failed rewrite must not fail the answer
        log.warning("question rewrite failed (%s); using the fallback", exc)
        return fallback(question, history)
    rewritten = re.sub(
        r"^(rewritten|standalone)?\s*question\s*:\s*",
        "",
        raw.strip().splitlines()[0] if raw.strip() else "",
        flags=re.I,
    )
    rewritten = rewritten.strip().strip('"“”').strip()
    if not rewritten or len(rewritten) > 3 * len(question) + 150 or NOT_FOUND in rewritten:
        return fallback(question, history)
    return rewritten


def transcript(history: History, answer_tokens: int = _MAX_ANSWER_TOKENS) -> list[str]:
    """The last turns as "User: …" / "Assistant: …" lines, each clipped (markers dropped from the answers)."""
    lines = []
    for user, assistant in history[-_MAX_TURNS:]:
        lines.append(f"User: {_clip(user, _MAX_QUESTION_TOKENS)}")
        lines.append(f"Assistant: {_clip(strip_markers(assistant), answer_tokens)}")
    return lines


def _clip(text: str, limit: int) -> str:
    text = text.strip()
    if count_tokens(text) <= limit:
        return text
    words = text.split()
    while words and count_tokens(" ".join(words)) > limit:
        words = words[: int(len(words) * 0.8)]
    return " ".join(words) + " …"
