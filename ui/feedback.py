"""Thumbs up/down: recent answers kept by their shown text, and each vote appended to the JSONL feedback log."""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from pathlib import Path

import rag
from ui.render import inert

_KEEP = 500
_ANSWERS: OrderedDict[str, dict] = OrderedDict()  # shown text -> the answer as a dict, newest last
_LOCK = threading.Lock()


def remember(answer: rag.Answer) -> None:
    """Keep a shown answer, so a vote on it can log its question and citations too."""
    with _LOCK:
        _ANSWERS[inert(answer.answer)] = answer.to_dict()
        while len(_ANSWERS) > _KEEP:
            _ANSWERS.popitem(last=False)


def record_feedback(path: Path, liked: bool, shown_answer: str) -> dict:
    """Append one thumbs up/down, with the question, answer and citations, to the JSONL feedback log."""
    with _LOCK:
        known = _ANSWERS.get(shown_answer, {})
    entry = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "liked": liked,
        "question": known.get("question"),
        "answer": known.get("answer", shown_answer),
        "citations": [{k: c[k] for k in ("n", "chunk_id", "source", "quote", "start", "end")} for c in known.get("citations", [])],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with _LOCK, open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(entry, ensure_ascii=False) + "\n")
    return entry
