"""Citations checked by code: markers must point at retrieved passages, every sentence is attributed to the
passage that supports it best, and each citation carries the exact supporting quote with source offsets."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field

from langchain_core.embeddings import Embeddings

from rag.context import Passage
from rag.text import claims as split_claims
from rag.text import tokenize

_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
SUPPORTED = 0.5  # support at or above this: a sentence is grounded in the passage
WEAK = 0.35  # below this for every passage: the sentence is not grounded anywhere


@dataclass
class Citation:
    """Passage `n` as cited in the answer; `quote` is source_text[start:end]."""

    n: int
    chunk_id: str
    source: str
    title: str
    text: str
    quote: str
    start: int
    end: int

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Checked:
    text: str
    citations: list[Citation] = field(default_factory=list)
    unsupported: list[str] = field(default_factory=list)
    removed_markers: list[int] = field(default_factory=list)


def check(answer: str, passages: list[Passage], embedder: Embeddings) -> Checked:
    """Validate and complete the answer's citations; drop sentences that no passage supports."""
    import numpy as np

    by_n = {p.n: p for p in passages}
    claims = split_claims(answer)
    removed = [m for c in claims for m in c.markers if m not in by_n]
    for c in claims:
        c.markers = [m for m in c.markers if m in by_n]
    with_text = [p for p in passages if len(p.sentence_vectors(embedder))]  # vectors from building the context, if it did
    owner = [(p.n, s, e) for p in with_text for s, e in p.sentences]
    if not claims or not owner:
        return Checked(text="", removed_markers=removed)
    sent_vecs = np.vstack([p.vectors for p in with_text])
    claim_vecs = np.array(embedder.embed_documents([c.text for c in claims]))
    texts = [by_n[n].text[s:e] for n, s, e in owner]

    out_sentences: list[str] = []
    best_quote: dict[int, tuple[float, int, int]] = {}
    unsupported: list[str] = []
    for ci, claim in enumerate(claims):
        terms = set(tokenize(claim.text))
        if not terms and not _NUMBER.search(claim.text):  # connective text ("Yes."): nothing to ground
            out_sentences.append(claim.text + claim.punct)
            continue
        support = [
            _support(claim.text, terms, float(claim_vecs[ci] @ sent_vecs[j]), texts[j], by_n[owner[j][0]].text) for j in range(len(texts))
        ]
        per_passage: dict[int, tuple[float, int]] = {}
        for j, value in enumerate(support):
            n = owner[j][0]
            if n not in per_passage or value > per_passage[n][0]:
                per_passage[n] = (value, j)
        best_n = max(per_passage, key=lambda n: per_passage[n][0])
        if per_passage[best_n][0] < WEAK:
            unsupported.append(claim.text + claim.punct)
            continue
        keep = [n for n in claim.markers if per_passage[n][0] >= WEAK]
        if not keep or per_passage[best_n][0] >= SUPPORTED and best_n not in keep and per_passage[keep[0]][0] < SUPPORTED:
            keep = [best_n] + [n for n in keep if per_passage[n][0] >= SUPPORTED]
        for n in keep:
            value, j = per_passage[n]
            if n not in best_quote or value > best_quote[n][0]:
                best_quote[n] = (value, owner[j][1], owner[j][2])
        out_sentences.append(f"{claim.text} {''.join(f'[{n}]' for n in keep)}{claim.punct}")

    citations = []
    for n in sorted(best_quote):
        p = by_n[n]
        _, s, e = best_quote[n]
        citations.append(
            Citation(
                n=n, chunk_id=p.chunk_id, source=p.source, title=p.title, text=p.text, quote=p.text[s:e], start=p.start + s, end=p.start + e
            )
        )
    return Checked(text=" ".join(out_sentences), citations=citations, unsupported=unsupported, removed_markers=removed)


def _support(claim: str, terms: set[str], similarity: float, sentence: str, chunk_text: str) -> float:
    """How well one source sentence backs a claim: meaning and shared words, and no number the chunk lacks."""
    recall = len(terms & set(tokenize(sentence))) / len(terms) if terms else 0.0
    value = 0.6 * similarity + 0.4 * recall
    numbers = set(_NUMBER.findall(claim))
    if any(n not in chunk_text for n in numbers):
        value *= 0.5
    return value
