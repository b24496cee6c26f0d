"""The compact context: the sentences of the retrieved chunks that matter most, numbered, within a token budget."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from langchain_core.documents import Document as LCDocument
from langchain_core.embeddings import Embeddings

from rag.chunk import count_tokens, sentences
from rag.lexical import tokenize
from rag.prompt import quote_untrusted


@dataclass
class Passage:
    """A retrieved chunk shown to the model as `[n]`, with the sentences selected from it (offsets within the chunk)."""

    n: int
    doc: LCDocument
    spans: list[tuple[int, int]] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)

    @property
    def excerpt(self) -> str:
        text = self.doc.page_content
        parts, last = [], None
        for s, e in sorted(self.spans):
            if last is not None and text[last:s].strip():
                parts.append("…")
            parts.append(text[s:e])
            last = e
        return " ".join(parts)

    def all_sentences(self) -> list[tuple[int, int]]:
        return [(s, e) for s, e, _ in sentences(self.doc.page_content)]


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


_LEANS_BACK = re.compile(r"^(?:it|its|this|that|these|those|they|their|he|she|his|her|such|the latter|the former)\b", re.I)


def build(
    question: str,
    docs: list[LCDocument],
    embedder: Embeddings,
    budget: int,
    tokenizer: str = "cl100k_base",
    margin: float = 0.25,
) -> tuple[list[Passage], Evidence]:
    """Pick the best sentences across `docs` until `budget` tokens, skipping those scoring more than `margin` below
    the best one (filler distracts a small model and costs prompt time); passages keep the retrieval order."""
    import numpy as np

    candidates = []  # (doc index, start, end)
    for i, doc in enumerate(docs):
        candidates.extend((i, s, e) for s, e, _ in sentences(doc.page_content))
    if not candidates:
        return [], Evidence()
    texts = [docs[i].page_content[s:e] for i, s, e in candidates]
    vectors = np.array(embedder.embed_documents(texts))
    query = np.array(embedder.embed_query(question))
    similarity = vectors @ query
    terms = set(tokenize(question))
    overlaps = [len(terms & set(tokenize(t))) / len(terms) if terms else 0.0 for t in texts]
    # Semantic match first; shared terms and the retriever's rank break near-ties.
    scores = [float(sim) + 0.3 * ov - 0.02 * candidates[j][0] for j, (sim, ov) in enumerate(zip(similarity, overlaps, strict=True))]

    chosen: dict[int, Passage] = {}
    used = 0
    floor = max(scores) - margin
    for j in sorted(range(len(candidates)), key=lambda j: -scores[j]):
        if scores[j] < floor:
            break
        # A sentence that opens with "It"/"This"/... brings the sentence it refers back to.
        group = [j - 1, j] if j > 0 and candidates[j - 1][0] == candidates[j][0] and _LEANS_BACK.match(texts[j]) else [j]
        group = [g for g in group if candidates[g][1:] not in _spans(chosen, candidates[g][0])]
        cost = sum(count_tokens(texts[g], tokenizer) + 2 for g in group)
        if not group or (chosen and used + cost > budget):
            continue
        for g in group:
            i, s, e = candidates[g]
            passage = chosen.setdefault(i, Passage(n=0, doc=docs[i]))
            passage.spans.append((s, e))
            passage.scores.append(scores[g])
        used += cost
    passages = [chosen[i] for i in sorted(chosen)]
    for n, p in enumerate(passages, 1):
        p.n = n
    covered = set().union(*(set(tokenize(p.excerpt)) for p in passages))
    evidence = Evidence(best_similarity=float(similarity.max()), term_coverage=len(terms & covered) / len(terms) if terms else 0.0)
    return passages, evidence


def _spans(chosen: dict[int, Passage], i: int) -> list[tuple[int, int]]:
    return chosen[i].spans if i in chosen else []


def render(passages: list[Passage]) -> str:
    return "\n\n".join(f"[{p.n}] ({quote_untrusted(p.doc.metadata.get('title', ''))}) {quote_untrusted(p.excerpt)}" for p in passages)
