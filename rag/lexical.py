"""The lexical (BM25) index over the same chunks as the vector store, built at ingestion and loaded once."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

from rag.text import tokenize

log = logging.getLogger(__name__)


def _bm25s():
    import bm25s

    logging.getLogger("bm25s").setLevel(logging.WARNING)  # it sets its own logger to DEBUG on import
    return bm25s


class LexicalIndex:
    """BM25 (bm25s) over chunk texts; `ids[i]` is the chunk id of document i."""

    def __init__(self, ids: list[str], bm25: Any, stamp: str) -> None:
        self.ids = ids
        self.bm25 = bm25
        self.stamp = stamp

    @classmethod
    def build(cls, ids: list[str], texts: list[str], stamp: str) -> LexicalIndex:
        bm25s = _bm25s()

        bm25 = bm25s.BM25()
        if ids:
            bm25.index([tokenize(t) or ["\u2205"] for t in texts], show_progress=False)
        return cls(list(ids), bm25, stamp)

    def save(self, directory: Path) -> None:
        tmp = directory.with_name(directory.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        if self.ids:
            self.bm25.save(str(tmp), show_progress=False)
        (tmp / "ids.json").write_text(json.dumps({"stamp": self.stamp, "ids": self.ids}))
        shutil.rmtree(directory, ignore_errors=True)
        tmp.rename(directory)

    @classmethod
    def load(cls, directory: Path) -> LexicalIndex | None:
        bm25s = _bm25s()

        try:
            meta = json.loads((directory / "ids.json").read_text())
            bm25 = bm25s.BM25.load(str(directory), show_progress=False) if meta["ids"] else bm25s.BM25()
        except (OSError, ValueError, KeyError) as exc:
            log.debug("no usable lexical index at %s: %s", directory, exc)
            return None
        return cls(meta["ids"], bm25, meta["stamp"])

    def search(self, query: str, k: int, allowed: set[str] | None = None) -> list[tuple[str, float]]:
        """(chunk id, BM25 score) for chunks sharing a term with the query, best first; only the ids in `allowed` when
        given (the others are masked out before ranking, so a filter never empties the top k)."""
        tokens = [t for t in tokenize(query) if t in self.bm25.vocab_dict] if self.ids else []
        if not tokens or allowed is not None and not allowed:
            return []
        mask = None
        if allowed is not None:
            import numpy as np

            mask = np.fromiter((i in allowed for i in self.ids), dtype=np.float32, count=len(self.ids))
        docs, scores = self.bm25.retrieve([tokens], k=min(k, len(self.ids)), show_progress=False, n_threads=1, weight_mask=mask)
        hits = [(self.ids[int(d)], float(s)) for d, s in zip(docs[0], scores[0], strict=True) if s > 0]
        return [h for h in hits if h[0] in allowed] if allowed is not None else hits
