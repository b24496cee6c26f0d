"""Retrieval: dense (Chroma) and lexical (BM25) candidates fused by reciprocal rank; `as_langchain()` gives the same
search as a LangChain retriever (imported only then: LangChain's retriever base costs a cold `rag search` ~0.7 s)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any, get_args

from langchain_core.documents import Document as LCDocument

from rag.config import RetrieveMode

if TYPE_CHECKING:
    from langchain_core.embeddings import Embeddings
    from langchain_core.retrievers import BaseRetriever

MODES: tuple[str, ...] = get_args(RetrieveMode)


@dataclass
class Hit:
    """One chunk (retrieved: with its fused score; listed: score None); `start`/`end` are its offsets in the
    normalised source text."""

    chunk_id: str
    source: str
    title: str
    score: float | None
    text: str
    start: int
    end: int

    @classmethod
    def from_document(cls, doc: LCDocument) -> Hit:
        m = doc.metadata
        return cls(
            chunk_id=doc.id or "",
            source=m.get("source", ""),
            title=m.get("title", ""),
            score=round(float(m["score"]), 4) if m.get("score") is not None else None,
            text=doc.page_content,
            start=int(m.get("start", 0)),
            end=int(m.get("end", 0)),
        )

    def to_dict(self) -> dict:
        return asdict(self)


def rrf(rankings: list[list[str]], k: int = 60) -> dict[str, float]:
    """Reciprocal rank fusion: each list adds 1 / (k + rank) to the ids it ranks."""
    fused: dict[str, float] = {}
    for ranking in rankings:
        for rank, key in enumerate(ranking, 1):
            fused[key] = fused.get(key, 0.0) + 1.0 / (k + rank)
    return fused


@dataclass(frozen=True)
class HybridRetriever:
    """Top-k chunks for a query; each document's metadata gains `score`, `dense_score` and `lexical_score`."""

    store: Any
    embedder: Embeddings
    lexical: Any
    k: int
    candidates: int
    rrf_k: int
    mode: RetrieveMode
    mmr: bool = False
    mmr_lambda: float = 0.7
    sources: tuple[str, ...] | None = None
    """Only chunks of these documents (dense and lexical search both); None = every document."""

    def invoke(self, query: str) -> list[LCDocument]:
        """The top-k chunks for `query` (the LangChain retriever's call)."""
        return self.retrieve(query)

    def only(self, sources: tuple[str, ...] | None) -> HybridRetriever:
        """This retriever kept to `sources` (None: every document)."""
        return replace(self, sources=sources or None)

    def as_langchain(self) -> BaseRetriever:
        """The same search as a LangChain `BaseRetriever` (a Runnable: callbacks, tracing, composition)."""
        from langchain_core.callbacks import CallbackManagerForRetrieverRun
        from langchain_core.retrievers import BaseRetriever

        retriever = self

        class LangChainRetriever(BaseRetriever):
            def _get_relevant_documents(
                self, query: str, *, run_manager: CallbackManagerForRetrieverRun
            ) -> list[LCDocument]:
                return retriever.retrieve(query)

        return LangChainRetriever()

    def retrieve(self, query: str, vector: Sequence[float] | None = None) -> list[LCDocument]:
        """The top-k chunks for `query`; `vector` is its embedding when the caller already has it."""
        return self.retrieve_many([query], [vector])

    def retrieve_many(
        self,
        queries: Sequence[str],
        vectors: Sequence[Sequence[float] | None],
        k: int | None = None,
        spread: bool = False,
    ) -> list[LCDocument]:
        """The top-k chunks for several phrasings or parts of one question, their rankings fused; with `spread`, the
        best chunk of each of the leading sources comes first, so a question about several documents hears each."""
        k = k or self.k
        rankings: list[list[str]] = []
        dense_scores: dict[str, float] = {}
        lexical_scores: dict[str, float] = {}
        need_vector = self.mode in ("hybrid", "dense") or self.mmr
        where = {"source": {"$in": list(self.sources)}} if self.sources else None
        allowed = {d.id for d in self.store.get(where=where, with_text=False)} if self.sources else None
        vectors = [
            self.embedder.embed_query(q) if v is None and need_vector else v
            for q, v in zip(queries, vectors, strict=True)
        ]
        for query, vector in zip(queries, vectors, strict=True):
            if self.mode in ("hybrid", "dense"):
                dense = self.store.search(list(vector), self.candidates, where=where)
                rankings.append([i for i, _ in dense])
                dense_scores = dict(dense) | dense_scores  # the first query's score wins
            if self.mode in ("hybrid", "lexical") and self.lexical is not None:
                lexical = self.lexical.search(query, self.candidates, allowed=allowed)
                rankings.append([i for i, _ in lexical])
                lexical_scores = dict(lexical) | lexical_scores
        fused = rrf(rankings, self.rrf_k)
        ranked = sorted(fused, key=lambda i: -fused[i])
        if self.mmr:
            ranked = self._mmr(vectors[0], ranked[: self.candidates], k)
        # Texts are read only for the winners (for a spread, for the leading candidates); an id the store no longer
        # has (a stale lexical entry) is skipped.
        docs: dict[str, LCDocument] = {}
        want = 3 * k if spread else k
        read = 0
        while len(docs) < want and read < len(ranked):
            batch = ranked[read : read + want - len(docs)]
            docs.update((d.id, d) for d in self.store.get(ids=batch))
            read += len(batch)
        present = [i for i in ranked if i in docs]
        chosen = (
            _spread(present, {i: docs[i].metadata.get("source", "") for i in present}, k) if spread else present[:k]
        )
        out = []
        for i in chosen:
            doc = docs[i]
            meta = {
                **doc.metadata,
                "score": fused[i],
                "dense_score": dense_scores.get(i),
                "lexical_score": lexical_scores.get(i, 0.0),
            }
            out.append(LCDocument(id=i, page_content=doc.page_content, metadata=meta))
        return out

    def _mmr(self, query_vector: Sequence[float], ids: list[str], k: int) -> list[str]:
        """Maximal marginal relevance: trade relevance for novelty among the fused candidates."""
        import numpy as np

        stored = self.store.vectors(ids)
        ids = [i for i in ids if i in stored]
        if len(ids) <= 1:
            return ids
        vectors = np.array([stored[i] for i in ids])
        q = np.array(query_vector)
        relevance = vectors @ q
        chosen: list[int] = []
        rest = list(range(len(ids)))
        while rest and len(chosen) < k:
            if chosen:
                redundancy = (vectors[rest] @ vectors[chosen].T).max(axis=1)
            else:
                redundancy = np.zeros(len(rest))
            scores = self.mmr_lambda * relevance[rest] - (1 - self.mmr_lambda) * redundancy
            pick = rest[int(np.argmax(scores))]
            chosen.append(pick)
            rest.remove(pick)
        return [ids[i] for i in chosen]


def _spread(ranked: list[str], source: dict[str, str], k: int) -> list[str]:
    """k ids in rank order, but the best one of each of the leading sources (at most half of k, at least two) first:
    a question about several documents must not be answered from the one that happens to rank highest."""
    firsts: list[str] = []
    seen: set[str] = set()
    for i in ranked:
        if source[i] not in seen:
            seen.add(source[i])
            firsts.append(i)
    firsts = firsts[: max(2, k // 2)]
    rest = [i for i in ranked if i not in firsts]
    picked = set(firsts + rest[: k - len(firsts)])
    return [i for i in ranked if i in picked]
