"""Retrieval: the query's top chunks from the vector store, as hits that carry their source span."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from langchain_core.documents import Document as LCDocument
from langchain_core.embeddings import Embeddings

from rag.store import Store


@dataclass
class Hit:
    """One retrieved chunk; `start`/`end` are its offsets in the normalised source text."""

    chunk_id: str
    source: str
    title: str
    score: float
    text: str
    start: int
    end: int

    @classmethod
    def from_document(cls, doc: LCDocument, score: float) -> Hit:
        m = doc.metadata
        return cls(
            chunk_id=doc.id or "",
            source=m.get("source", ""),
            title=m.get("title", ""),
            score=round(float(score), 4),
            text=doc.page_content,
            start=int(m.get("start", 0)),
            end=int(m.get("end", 0)),
        )

    def to_dict(self) -> dict:
        return asdict(self)


def dense_search(db: Store, embedder: Embeddings, query: str, k: int) -> list[Hit]:
    vector = embedder.embed_query(query)
    return [Hit.from_document(doc, score) for doc, score in db.search(vector, k)]
