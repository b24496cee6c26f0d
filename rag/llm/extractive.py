"""The `extractive` backend: no language model; an answer is the context's best-matching sentences, each cited."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

_ENDS = (".", "!", "?", "”", '"', "’", ")")  # how a sentence ends (a heading does not)


class NoModel:
    """The backend without a model: it writes no prose and reads nothing whole. An answer shows a sentence or two
    however deep the question, is refused on weak evidence, and a follow-up keeps its earlier question beside it
    instead of being rewritten."""

    def write(self, passages: Sequence[Any], max_sentences: int = 2) -> str:
        """The best-matching sentences of `passages` (the context's `rag.context.Passage`s), each with its marker."""
        ranked = sorted(
            (score, p.n, span)
            for p in passages
            for score, span in zip(p.scores, p.highlights, strict=True)
            if p.text[span[0] : span[1]].rstrip().endswith(_ENDS)
        )[::-1]
        if not ranked:
            return ""
        top = ranked[0][0]
        picked = [r for r in ranked[:max_sentences] if r[0] >= 0.8 * top]
        by_n = {p.n: p for p in passages}
        out = []
        for _, n, (s, e) in picked:
            sentence = by_n[n].text[s:e].rstrip()
            punct = sentence[-1] if sentence[-1:] in (".", "!", "?") else "."
            out.append(f"{sentence.rstrip('.!?')} [{n}]{punct}")
        return " ".join(out)

    def __repr__(self) -> str:
        return "NoModel()"
