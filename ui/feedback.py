"""Thumbs up/down: recent answers kept by their shown text, and each vote appended to the JSONL feedback log."""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from pathlib import Path

import rag

_KEEP = 500
_MAX_UNKNOWN = 20_000  # characters of a voted text no answer here showed: the page sends it, so it is capped
_ANSWERS: OrderedDict[str, dict] = OrderedDict()  # shown text -> the answer as a dict, newest last
_LOCK = threading.Lock()


def remember(answer: rag.Answer, shown: str) -> None:
    """Keep an answer by the text the chat `shown` for it (struck sentences too), so a vote on it can log its question
    and citations."""
    with _LOCK:
        _ANSWERS[shown.strip()] = answer.to_dict()
        while len(_ANSWERS) > _KEEP:
            _ANSWERS.popitem(last=False)


def record_feedback(path: Path, liked: bool, shown: str | list | dict) -> dict:
    """Append one thumbs up/down, with the question, answer and citations, to the JSONL feedback log.

    Args:
        shown: the voted message as the page sends it (`gr.LikeData.value`): its text, or Gradio 6's list of the
            contents of the voted message group.
    """
    text = _text(shown).strip()
    with _LOCK:
        known = _ANSWERS.get(text, {})
    entry = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "liked": liked,
        "question": known.get("question"),
        "answer": known.get("answer", text[:_MAX_UNKNOWN]),
        "citations": [{k: c[k] for k in ("n", "chunk_id", "source", "quote", "start", "end")} for c in known.get("citations", [])],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with _LOCK, open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(entry, ensure_ascii=False) + "\n")
    return entry


def _text(value: str | list | dict) -> str:
    """The text of a voted message: a string, a part such as {"type": "text", "text": …}, or a list of either."""
    texts = []
    for part in value if isinstance(value, list) else [value]:
        if isinstance(part, dict):
            part = part.get("text") or part.get("value") or part.get("content")
        if isinstance(part, str):
            texts.append(part)
    return "\n\n".join(texts)
