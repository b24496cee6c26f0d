"""The lexical (BM25) index over the same chunks as the vector store, built at ingestion and loaded once.

bm25s builds the index (each term's BM25 score in each chunk, a sparse term x chunk matrix); a query sums the rows of
its terms. Loading and searching need only numpy: importing bm25s (and SciPy with it) cost a cold `rag search` about
0.25 s. The files are bm25s's own (`BM25.save`), so either side can read what the other wrote.
"""

from __future__ import annotations

import io
import json
import logging
import shutil
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from rag.text import tokenize

log = logging.getLogger(__name__)

_ARRAYS = ("data", "indices", "indptr")
_PLAIN_METHODS = {"robertson", "lucene", "atire"}  # no score for a term's absence (BM25L and BM25+ have one)


def _bm25s():
    import bm25s

    logging.getLogger("bm25s").setLevel(logging.WARNING)  # it sets its own logger to DEBUG on import
    return bm25s


class LexicalIndex:
    """BM25 over chunk texts; `ids[i]` is the chunk id of document i. `data[indptr[t]:indptr[t + 1]]` are term t's
    scores in the chunks `indices[indptr[t]:indptr[t + 1]]`; `vocab` maps a term to t."""

    def __init__(
        self, ids: list[str], vocab: dict[str, int], arrays: dict[str, np.ndarray], params: dict[str, Any], stamp: str
    ) -> None:
        self.ids = ids
        self.vocab = vocab
        self.data, self.indices, self.indptr = (arrays[name] for name in _ARRAYS)
        self.params = params
        self.stamp = stamp

    @classmethod
    def build(cls, ids: list[str], texts: list[str], stamp: str) -> LexicalIndex:
        if not ids:
            return cls([], {}, {name: np.zeros(1 if name == "indptr" else 0) for name in _ARRAYS}, {}, stamp)
        bm25 = _bm25s().BM25()
        bm25.index([tokenize(t) or ["\u2205"] for t in texts], show_progress=False)
        params = {"k1": bm25.k1, "b": bm25.b, "delta": bm25.delta, "method": bm25.method, "idf_method": bm25.idf_method}
        params |= {"dtype": bm25.dtype, "int_dtype": bm25.int_dtype, "num_docs": len(ids), "version": bm25s_version()}
        return cls(list(ids), dict(bm25.vocab_dict), {name: bm25.scores[name] for name in _ARRAYS}, params, stamp)

    def save(self, directory: Path) -> None:
        tmp = directory.with_name(directory.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        if self.ids:
            for name in _ARRAYS:
                np.save(tmp / f"{name}.csc.index.npy", getattr(self, name))
            (tmp / "vocab.index.json").write_text(json.dumps(self.vocab))
            (tmp / "params.index.json").write_text(json.dumps(self.params | {"backend": "numpy"}, indent=4))
        (tmp / "ids.json").write_text(json.dumps({"stamp": self.stamp, "ids": self.ids}))
        shutil.rmtree(directory, ignore_errors=True)
        tmp.rename(directory)

    @classmethod
    def load(cls, directory: Path) -> LexicalIndex | None:
        """The index saved in `directory`; None when there is none, it is damaged, or it is of a BM25 variant that
        scores absent terms (not read here)."""
        try:
            meta = json.loads((directory / "ids.json").read_text())
            if not meta["ids"]:
                return cls.build([], [], meta["stamp"])
            params = json.loads((directory / "params.index.json").read_text())
            vocab = json.loads((directory / "vocab.index.json").read_text())
            arrays = {name: np.load(directory / f"{name}.csc.index.npy", allow_pickle=False) for name in _ARRAYS}
            return cls._checked(meta, vocab, arrays, params)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.debug("no usable lexical index at %s: %s", directory, exc)
            return None

    def to_bytes(self) -> bytes:
        """The whole index as one blob (numpy's .npz, no pickles), for a shared database (`from_bytes` reads it)."""
        header = json.dumps({"stamp": self.stamp, "ids": self.ids, "vocab": self.vocab, "params": self.params})
        out = io.BytesIO()
        np.savez(out, header=np.array(header), **{name: getattr(self, name) for name in _ARRAYS})
        return out.getvalue()

    @classmethod
    def from_bytes(cls, blob: bytes) -> LexicalIndex | None:
        """The index `to_bytes` wrote; None when the blob is damaged (the same checks as `load`)."""
        try:
            with np.load(io.BytesIO(blob), allow_pickle=False) as npz:
                head = json.loads(str(npz["header"]))
                if not head["ids"]:
                    return cls.build([], [], head["stamp"])
                arrays = {name: npz[name] for name in _ARRAYS}
            return cls._checked({"stamp": head["stamp"], "ids": head["ids"]}, head["vocab"], arrays, head["params"])
        except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile) as exc:
            log.debug("no usable lexical index in the blob: %s", exc)
            return None

    @classmethod
    def _checked(cls, meta: dict, vocab: dict, arrays: dict[str, np.ndarray], params: dict) -> LexicalIndex:
        if params.get("method") not in _PLAIN_METHODS:
            raise ValueError(f"BM25 method {params.get('method')!r} is not read here")
        if not 0 < len(arrays["indptr"]) <= len(vocab) + 1 or int(params["num_docs"]) != len(meta["ids"]):
            raise ValueError("its vocabulary, matrix and chunk ids disagree")
        return cls(meta["ids"], vocab, arrays, params, meta["stamp"])

    def scores(self, query: str) -> np.ndarray:
        """Each chunk's BM25 score for `query` (a term said twice counts twice, as in bm25s)."""
        scores = np.zeros(len(self.ids), dtype=np.float32)
        for term in tokenize(query):
            t = self.vocab.get(term)
            if t is not None and t + 1 < len(self.indptr):  # bm25s's vocabulary may end in a term with no column ("")
                span = slice(self.indptr[t], self.indptr[t + 1])
                np.add.at(scores, self.indices[span], self.data[span])
        return scores

    def search(self, query: str, k: int, allowed: set[str] | None = None) -> list[tuple[str, float]]:
        """(chunk id, BM25 score) for chunks sharing a term with the query, best first (ties: index order); only the
        ids in `allowed` when given (the others are masked out before ranking, so a filter never empties the top k)."""
        if not self.ids or allowed is not None and not allowed:
            return []
        scores = self.scores(query)
        if allowed is not None:
            scores *= np.fromiter((i in allowed for i in self.ids), dtype=np.float32, count=len(self.ids))
        top = np.argsort(-scores, kind="stable")[:k]
        return [(self.ids[int(d)], float(scores[d])) for d in top if scores[d] > 0]


def bm25s_version() -> str:
    from importlib.metadata import version

    return version("bm25s")
