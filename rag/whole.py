"""The whole corpus in view: when the indexed documents fit the model's context, each question is answered with all
of them in the prompt. The documents are read once into a fixed prompt prefix (the runtime keeps, or saves, its
state), so a question reads only its own words; the citation check then runs against every passage.

`plan` decides which way a question is answered and says why; `Corpus` is the prefix: every chunk of the chosen
documents in document and position order, numbered from 1, each showing only the sentences its predecessor did not
(neighbouring chunks overlap)."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from typing import Any, ClassVar

from langchain_core.documents import Document as LCDocument
from langchain_core.embeddings import Embeddings

from rag import context
from rag.config import Settings
from rag.text import count_tokens

log = logging.getLogger(__name__)

WHOLE, RETRIEVED = "whole corpus", "retrieved passages"
_ROOM = 900  # tokens kept free for a question, two clipped earlier turns and the template around them
_MARGIN = 1.1  # the model's tokenizer against tiktoken's count, on English prose (measured: Qwen2.5 reads ~5% more)


@dataclass
class Way:
    """How a question is answered (`Way.WHOLE` or `Way.RETRIEVED`) and why, in words for `rag config` and the chat."""

    WHOLE: ClassVar[str] = WHOLE
    RETRIEVED: ClassVar[str] = RETRIEVED

    name: str
    why: str
    corpus: Corpus | None = None

    @property
    def whole(self) -> bool:
        return self.corpus is not None


@dataclass
class Corpus:
    """The documents as one numbered block: `passages` (every chunk, its new sentences highlighted), `text` (the block
    as the prompt shows it), `tokens` (its estimated length for the model) and `key` (what a saved state of reading it
    is named by: the text and the index version it came from)."""

    passages: list[context.Passage]
    text: str
    tokens: int
    key: str
    sources: tuple[str, ...] = ()
    _vectors: Any = field(default=None, repr=False)

    @classmethod
    def from_chunks(cls, docs: list[LCDocument], version: str, tokenizer: str) -> Corpus:
        docs = sorted(docs, key=lambda d: (d.metadata.get("source", ""), int(d.metadata.get("position", 0))))
        passages = []
        last_end: dict[str, int] = {}
        for n, doc in enumerate(docs, 1):
            p = context.Passage.from_document(n, doc)
            seen = last_end.get(p.source, -1)
            fresh = [(s, e) for s, e in p.sentences if p.start + s >= seen - 1]  # the overlap was shown with the chunk before
            p.highlights = fresh or list(p.sentences[-1:])
            p.scores = [0.0] * len(p.highlights)
            last_end[p.source] = max(seen, p.end)
            passages.append(p)
        text = render(passages)
        digest = hashlib.sha256(f"{version}\n{text}".encode()).hexdigest()[:16]
        tokens = round(count_tokens(text, tokenizer) * _MARGIN)
        return cls(passages, text, tokens, digest, tuple(sorted({p.source for p in passages})))

    def embed(self, embedder: Embeddings) -> None:
        """Embed every sentence once (the citation check and the evidence read them for each question)."""
        import numpy as np

        if self._vectors is not None:
            return
        texts = [p.text[s:e] for p in self.passages for s, e in p.sentences]
        vectors = np.array(embedder.embed_documents(texts)) if texts else np.zeros((0, 1))
        row = 0
        for p in self.passages:
            p.vectors, row = vectors[row : row + len(p.sentences)], row + len(p.sentences)
        self._vectors = vectors

    def evidence(self, question: str, query_vector: Any, k: int) -> tuple[list[context.Passage], context.Evidence]:
        """The `k` passages closest to the question (for the sources panel while the answer is written, each with its
        closest sentence marked) and how well the corpus matches the question at all."""
        import numpy as np

        from rag.text import tokenize

        q = np.asarray(query_vector)
        best: list[tuple[float, int, tuple[int, int]]] = []
        for i, p in enumerate(self.passages):
            if len(p.sentences):
                sims = p.vectors @ q
                j = int(np.argmax(sims))
                best.append((float(sims[j]), i, p.sentences[j]))
        if not best:
            return [], context.Evidence()
        best.sort(reverse=True)
        shown = []
        for sim, i, span in best[:k]:
            p = self.passages[i]
            shown.append(context.Passage(p.n, p.chunk_id, p.source, p.title, p.text, p.start, p.end, [span], [sim]))
        terms = set(tokenize(question))
        covered = set(tokenize(self.text.lower()))
        coverage = len(terms & covered) / len(terms) if terms else 0.0
        return shown, context.Evidence(best_similarity=best[0][0], term_coverage=coverage)


def render(passages: list[context.Passage]) -> str:
    """The numbered block, each document's title said once, on its first passage (titles repeated on every chunk
    cost a fifth of the tokens of a news corpus)."""
    from rag.prompt import quote_untrusted

    out, last = [], None
    for p in passages:
        head = f"({quote_untrusted(p.title)}) " if p.source != last else ""
        out.append(f"[{p.n}] {head}{quote_untrusted(p.excerpt)}")
        last = p.source
    return "\n\n".join(out)


def fixed_tokens(tokenizer: str) -> int:
    """The estimated length of the instructions and worked examples that come before the documents."""
    from rag.prompt import WHOLE as template

    messages = template.invoke({"passages": "", "conversation": "", "question": "", "shape": ""}).to_messages()
    return round(sum(count_tokens(m.text, tokenizer) + 5 for m in messages) * _MARGIN)


def budget(settings: Settings, fixed_tokens: int) -> int:
    """Tokens the documents may take: the context less the fixed instructions, the longest answer and room for a
    question with its conversation."""
    return settings.llm_n_ctx - fixed_tokens - settings.deep_max_tokens - _ROOM


def plan(settings: Settings, backend: str, total_tokens: int | None, fixed_tokens: int, chosen: bool = False) -> str | None:
    """Why the retrieved way must be used (None: the whole corpus may be read). `total_tokens` is the documents'
    estimated length (None: more chunks than could ever fit)."""
    mode = settings.answer_mode
    what = "the chosen documents" if chosen else "the indexed documents"
    if mode == "retrieved":
        return "RAG_ANSWER_MODE=retrieved"
    if backend == "extractive":
        return "the extractive backend has no model to read the documents"
    if backend == "openai" and mode == "auto":
        return "the openai backend's context size is unknown here (RAG_ANSWER_MODE=whole reads whole when they fit RAG_LLM_N_CTX)"
    room = budget(settings, fixed_tokens)
    if total_tokens is None or total_tokens > room:
        size = "more" if total_tokens is None else f"about {total_tokens:,}"
        return f"{what} take {size} tokens; {room:,} fit beside the instructions in the model's {settings.llm_n_ctx:,}-token context"
    return None


__all__ = ["RETRIEVED", "WHOLE", "Corpus", "Way", "budget", "fixed_tokens", "plan", "render"]
