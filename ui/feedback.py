"""Thumbs up/down: the answers each session was shown, and each vote on one of them appended to the JSONL feedback
log with its question, citations and voter.

A vote carries only the voted message's text (the page sends it), so it counts only on an answer this session (and
this login) was shown; anything else is refused and nothing is logged. Each session has a few votes a minute, and the
log stops growing at `feedback_max_mb` (further votes are refused, and the server log says so).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import OrderedDict, deque
from pathlib import Path

import rag

log = logging.getLogger(__name__)

_KEEP = 1000  # answers remembered, across sessions: the oldest go first
VOTES_PER_MINUTE = 30  # per session
_ANSWERS: OrderedDict[tuple[str, str, str], dict] = OrderedDict()  # (session, owner, shown text) -> answer dict
_VOTES: OrderedDict[str, deque[float]] = OrderedDict()  # session -> when its recent votes came
_LOCK = threading.Lock()

NOT_SHOWN = "This vote was not counted: it names no answer this chat showed you."
TOO_MANY = f"This vote was not counted: at most {VOTES_PER_MINUTE} votes a minute. Please wait a moment."
FULL = "This vote was not counted: the feedback log is full."


class Refused(Exception):
    """A vote that is not logged; the message says why (to the voter)."""


def remember(answer: rag.Answer, shown: str, session: str | None, owner: str | None) -> None:
    """Keep an answer by the text the chat `shown` for it (struck sentences too) to this `session` of `owner` (the
    login; None or "" without one), so a vote on it from there can log its question and citations."""
    key = (session or "", owner or "", shown.strip())
    with _LOCK:
        _ANSWERS[key] = answer.to_dict()
        _ANSWERS.move_to_end(key)
        while len(_ANSWERS) > _KEEP:
            _ANSWERS.popitem(last=False)


def record_feedback(
    path: Path,
    liked: bool,
    shown: str | list | dict,
    *,
    session: str | None,
    owner: str | None,
    max_mb: float,
    now: float | None = None,
) -> dict:
    """Append one thumbs up/down on an answer this session was shown, with the question, answer, citations, voter
    and session, to the JSONL feedback log; `Refused` (nothing logged) for a text this session was not shown, past
    `VOTES_PER_MINUTE`, or when the log would pass `max_mb`.

    Args:
        shown: the voted message as the page sends it (`gr.LikeData.value`): its text, or Gradio 6's list of the
            contents of the voted message group.
    """
    now = time.monotonic() if now is None else now
    session, owner = session or "", owner or ""
    with _LOCK:
        if not _counted(session, now):
            raise Refused(TOO_MANY)
        known = _ANSWERS.get((session, owner, _text(shown).strip()))
    if known is None:
        raise Refused(NOT_SHOWN)
    entry = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "liked": liked,
        "voter": owner or "anonymous",
        "session": session,
        "question": known.get("question"),
        "answer": known.get("answer"),
        "citations": [
            {k: c[k] for k in ("n", "chunk_id", "source", "quote", "start", "end")} for c in known.get("citations", [])
        ],
    }
    line = (json.dumps(entry, ensure_ascii=False) + "\n").encode("utf-8")
    path.parent.mkdir(parents=True, exist_ok=True)
    with _LOCK, open(path, "ab") as fh:
        if fh.tell() + len(line) > max_mb * 1_000_000:
            log.warning(
                "feedback log %s is full (RAG_FEEDBACK_MAX_MB=%g): a vote was refused; move the log aside to take more",
                path,
                max_mb,
            )
            raise Refused(FULL)
        fh.write(line)
    return entry


def _counted(session: str, now: float) -> bool:
    """Whether `session` may vote now (at most VOTES_PER_MINUTE in any minute); counts the attempt. Under `_LOCK`."""
    times = _VOTES.setdefault(session, deque())
    _VOTES.move_to_end(session)
    while times and now - times[0] >= 60.0:
        times.popleft()
    while len(_VOTES) > _KEEP:  # the sessions that voted longest ago are forgotten
        _VOTES.popitem(last=False)
    if len(times) >= VOTES_PER_MINUTE:
        return False
    times.append(now)
    return True


def _text(value: str | list | dict) -> str:
    """The text of a voted message: a string, a part such as {"type": "text", "text": …}, or a list of either."""
    texts = []
    for part in value if isinstance(value, list) else [value]:
        if isinstance(part, dict):
            part = part.get("text") or part.get("value") or part.get("content")
        if isinstance(part, str):
            texts.append(part)
    return "\n\n".join(texts)
