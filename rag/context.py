"""The compact context: the sentences of the retrieved chunks that matter most, numbered, within a token budget."""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from langchain_core.documents import Document as LCDocument
from langchain_core.embeddings import Embeddings

from rag.prompt import quote_untrusted
from rag.text import count_tokens, sentences, tokenize


@dataclass
class Passage:
    """A retrieved chunk shown to the model as `[n]`. `text` is the whole chunk, `start`/`end` its offsets in the
    source, and `highlights` the offsets (within `text`) of the sentences the model was shown. For a paged source
    (PDF), `page` is the page the chunk starts on and `page_breaks` the source offsets where later pages start."""

    n: int
    chunk_id: str
    source: str
    title: str
    text: str
    start: int = 0
    end: int = 0
    highlights: list[tuple[int, int]] = field(default_factory=list)
    scores: list[float] = field(default_factory=list, repr=False)  # per highlight: how well it matches the question
    sentences: list[tuple[int, int]] = field(default_factory=list, repr=False)  # every sentence of `text`
    vectors: Any = field(default=None, repr=False)  # their embeddings, one row per sentence (None: not embedded yet)
    page: int | None = None
    page_breaks: tuple[int, ...] = field(default=(), repr=False)

    @classmethod
    def from_document(cls, n: int, doc: LCDocument) -> Passage:
        m = doc.metadata
        text = doc.page_content
        start = int(m.get("start", 0))
        return cls(
            n=n,
            chunk_id=doc.id or "",
            source=m.get("source", ""),
            title=m.get("title", ""),
            text=text,
            start=start,
            end=int(m.get("end", start + len(text))),
            sentences=[(s, e) for s, e, _ in sentences(text)],
            page=int(m["page"]) if m.get("page") is not None else None,
            page_breaks=tuple(int(x) for x in str(m.get("page_breaks") or "").split(",") if x.strip().isdigit()),
        )

    def page_at(self, offset: int) -> int | None:
        """The page (from 1) of character `offset` of the source, when it falls in this chunk of a paged document;
        None for a document without pages."""
        return None if self.page is None else self.page + bisect_right(self.page_breaks, offset)

    @property
    def excerpt(self) -> str:
        """The highlighted sentences in order, with "…" where text between them was left out."""
        parts, last = [], None
        for s, e in sorted(self.highlights):
            if last is not None and self.text[last:s].strip():
                parts.append("…")
            parts.append(self.text[s:e])
            last = e
        return " ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        keys = ("n", "chunk_id", "source", "title", "text", "start", "end")
        return {k: getattr(self, k) for k in keys} | {"highlights": [list(h) for h in sorted(self.highlights)]}

    def sentence_vectors(self, embedder: Embeddings) -> Any:
        """The embeddings of every sentence of the chunk (computed once, kept)."""
        import numpy as np

        if not self.sentences:
            self.sentences = [(s, e) for s, e, _ in sentences(self.text)]
        if self.vectors is None:
            self.vectors = np.array(embedder.embed_documents([self.text[s:e] for s, e in self.sentences]))
        return self.vectors


@dataclass
class Evidence:
    """How well the retrieved text matches the question, before any model runs."""

    best_similarity: float = 0.0
    term_coverage: float = 0.0

    @property
    def hopeless(self) -> bool:
        """Nothing semantically close and not one question term in the text: no model could answer from it."""
        return self.best_similarity < 0.3 and self.term_coverage == 0.0

    @property
    def weak(self) -> bool:
        """No sentence close in meaning: what the no-model backend refuses on, having no model to ask."""
        return self.best_similarity < 0.35


SOURCES_HEARD = 3  # a question about several documents hears at most this many, each through its best sentence
_LEANS_BACK = re.compile(
    r"^(?:it|its|this|that|these|those|they|their|he|she|his|her|such|the latter|the former)\b", re.I
)


def build(
    question: str,
    query_vector: Sequence[float],
    docs: list[LCDocument],
    embedder: Embeddings,
    budget: int,
    tokenizer: str,
    margin: float,
    parts: Sequence[Sequence[float]] = (),
    spread: bool = False,
    in_document_order: bool = False,
) -> tuple[list[Passage], Evidence]:
    """Pick the best sentences across `docs` until `budget` tokens, skipping those scoring more than `margin` below
    the best one (filler distracts a small model and costs prompt time); passages keep the retrieval order. The best
    sentence for each vector of `parts` (the sub-questions) and, with `spread`, the best sentence of each source come
    first, so no part and no document falls out of the budget; `in_document_order`: shown by document and position.
    Every sentence is embedded once here, and the passages keep those vectors for the citation check."""
    import numpy as np

    candidates = [Passage.from_document(0, doc) for doc in docs]
    spans = [(i, s, e) for i, p in enumerate(candidates) for s, e in p.sentences]  # (doc index, start, end)
    if not spans:
        return [], Evidence()
    texts = [candidates[i].text[s:e] for i, s, e in spans]
    vectors = np.array(embedder.embed_documents(texts))
    row = 0
    for p in candidates:
        p.vectors, row = vectors[row : row + len(p.sentences)], row + len(p.sentences)
    similarity = vectors @ np.asarray(query_vector)
    terms = set(tokenize(question))
    overlaps = [len(terms & set(tokenize(t))) / len(terms) if terms else 0.0 for t in texts]
    # Semantic match first; shared terms and the retriever's rank break near-ties.
    scores = [
        float(sim) + 0.3 * ov - 0.02 * spans[j][0] for j, (sim, ov) in enumerate(zip(similarity, overlaps, strict=True))
    ]

    first = [int(np.argmax(vectors @ np.asarray(v))) for v in parts]
    if spread:
        first += _best_of_each_source(spans, candidates, scores)
    chosen = _fill(first, spans, texts, scores, candidates, budget, tokenizer, margin)
    passages = [candidates[i] for i in sorted(chosen)]
    if in_document_order:  # meant for the prompt cache; measured to save 2% of the tokens read (docs/performance.md)
        passages.sort(key=lambda p: (p.source, p.start))
    for n, p in enumerate(passages, 1):
        p.n = n
    covered = set().union(*(set(tokenize(p.excerpt)) for p in passages))
    evidence = Evidence(
        best_similarity=float(similarity.max()), term_coverage=len(terms & covered) / len(terms) if terms else 0.0
    )
    return passages, evidence


def _best_of_each_source(
    spans: list[tuple[int, int, int]], candidates: list[Passage], scores: list[float]
) -> list[int]:
    """The best-scoring sentence of each source, best first, for at most `SOURCES_HEARD` sources."""
    best_of: dict[str, int] = {}
    for j in range(len(spans)):
        src = candidates[spans[j][0]].source
        if src not in best_of or scores[j] > scores[best_of[src]]:
            best_of[src] = j
    return sorted(best_of.values(), key=lambda j: -scores[j])[:SOURCES_HEARD]


def _fill(
    first: list[int],
    spans: list[tuple[int, int, int]],
    texts: list[str],
    scores: list[float],
    candidates: list[Passage],
    budget: int,
    tokenizer: str,
    margin: float,
) -> set[int]:
    """Highlight sentences in `candidates`, `first` then by score, until `budget` tokens or a score more than `margin`
    below the best; returns the indices of the candidates that got a sentence."""
    chosen: set[int] = set()
    used = 0
    floor = max(scores) - margin
    order = list(dict.fromkeys(first + sorted(range(len(spans)), key=lambda j: -scores[j])))
    for j in order:
        if scores[j] < floor and j not in first:
            break
        # A sentence that opens with "It"/"This"/... brings the sentence it refers back to.
        group = [j - 1, j] if j > 0 and spans[j - 1][0] == spans[j][0] and _LEANS_BACK.match(texts[j]) else [j]
        group = [g for g in group if spans[g][1:] not in candidates[spans[g][0]].highlights]
        cost = sum(count_tokens(texts[g], tokenizer) + 2 for g in group)
        if not group or (chosen and used + cost > budget):
            continue
        for g in group:
            i, s, e = spans[g]
            candidates[i].highlights.append((s, e))
            candidates[i].scores.append(scores[g])
            chosen.add(i)
        used += cost
    return chosen


def render(passages: list[Passage]) -> str:
    return "\n\n".join(f"[{p.n}] ({quote_untrusted(p.title)}) {quote_untrusted(p.excerpt)}" for p in passages)
