"""The whole corpus in view: when the indexed documents fit the model's context, each question is answered with all
of them in the prompt. The documents are read once into a fixed prompt prefix (the runtime keeps, or saves, its
state), so a question reads only its own words; the citation check then runs against every passage.

`plan` decides which way a question is answered and says why; `Corpus` is the prefix: every chunk of the chosen
documents in document and position order, numbered from 1, each showing only the sentences its predecessor did not
(neighbouring chunks overlap)."""

from __future__ import annotations

import functools
import hashlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any, ClassVar

from langchain_core.documents import Document as LCDocument
from langchain_core.embeddings import Embeddings

from rag import context
from rag.config import Settings
from rag.llm.state import KeepsState
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
    _embedded: bool = field(default=False, repr=False)

    @classmethod
    def from_chunks(cls, docs: list[LCDocument], version: str, tokenizer: str) -> Corpus:
        docs = sorted(docs, key=lambda d: (d.metadata.get("source", ""), int(d.metadata.get("position", 0))))
        passages = []
        last_end: dict[str, int] = {}
        for n, doc in enumerate(docs, 1):
            p = context.Passage.from_document(n, doc)
            seen = last_end.get(p.source, -1)
            fresh = [
                (s, e) for s, e in p.sentences if p.start + s >= seen - 1
            ]  # the overlap was shown with the chunk before
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

        if self._embedded:
            return
        texts = [p.text[s:e] for p in self.passages for s, e in p.sentences]
        vectors = np.array(embedder.embed_documents(texts)) if texts else np.zeros((0, 1))
        row = 0
        for p in self.passages:
            p.vectors, row = vectors[row : row + len(p.sentences)], row + len(p.sentences)
        self._embedded = True

    @cached_property
    def words(self) -> frozenset[str]:
        """Every word the documents use (a question sharing none of them is not about them)."""
        from rag.text import tokenize

        return frozenset(tokenize(self.text))

    @property
    def reading(self) -> dict[str, str]:
        """The prompt whose reading is kept: every document, no conversation, and a stand-in question (which the next
        prompt does not share)."""
        return {"passages": self.text, "conversation": "", "question": "Why?", "shape": ""}

    def evidence(
        self, question: str, query_vector: Any, k: int, spread: bool = False
    ) -> tuple[list[context.Passage], context.Evidence]:
        """The `k` passages closest to the question (for the sources panel while the answer is written, each with its
        closest sentence marked) and how well the corpus matches the question at all. `spread` (a question about
        several documents): the best passage of each document comes first, up to `context.SOURCES_HEARD` of them."""
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
        if spread:
            firsts: dict[str, tuple[float, int, tuple[int, int]]] = {}
            for item in best:
                firsts.setdefault(self.passages[item[1]].source, item)
            lead = list(firsts.values())[: context.SOURCES_HEARD]
            best = lead + [item for item in best if item not in lead]
        shown = [replace(self.passages[i], highlights=[span], scores=[sim]) for sim, i, span in best[:k]]
        terms = set(tokenize(question))
        coverage = len(terms & self.words) / len(terms) if terms else 0.0
        return shown, context.Evidence(best_similarity=best[0][0], term_coverage=coverage)


class Reader:
    """The documents read whole: one `Corpus` per index version and choice of documents (a few kept), whether the
    model holds or has saved its reading, and the reading itself, now or in the background."""

    KEEP = 16

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._corpora: dict[tuple, Corpus] = {}
        self._lock = threading.Lock()
        self._reading: set[str] = set()
        self._ready: set[str] = set()  # corpora whose reading the model holds or has saved: it stays so

    def way(
        self,
        store: Any,
        stamp: str | None,
        sources: tuple[str, ...] | None,
        backend: str,
        llm: Any,
        embedder: Embeddings,
        background: bool,
    ) -> Way:
        """How a question over `store` (at lexical `stamp`) is answered; `background`: when the reading is not ready,
        start it on a thread and answer from retrieved passages meanwhile."""
        corpus, why = self.corpus(store, stamp, sources, backend)
        if corpus is None:
            return Way(RETRIEVED, why)
        if not self.ready(corpus, llm) and background:
            self.read_in_background(corpus, llm, embedder)
            return Way(RETRIEVED, "the documents are being read once (retrieved passages until then)")
        ctx = self.settings.llm_n_ctx
        return Way(
            WHOLE,
            f"{len(corpus.sources)} documents, about {corpus.tokens:,} tokens, fit the model's {ctx:,}-token context",
            corpus,
        )

    def corpus(
        self, store: Any, stamp: str | None, sources: tuple[str, ...] | None, backend: str
    ) -> tuple[Corpus | None, str]:
        """The documents of `store` (only `sources` when given) as one block, or None and why they cannot be read
        whole."""
        s = self.settings
        fixed = fixed_tokens(s.tokenizer)
        version = f"{store.name}:{stamp}"
        key = (version, sources or ())
        with self._lock:
            corpus = self._corpora.get(key)
        if corpus is None:
            if (
                store.count() * 16 > budget(s, fixed) * 4
            ):  # chunks hold at least 16 tokens, a quarter of them may be overlap
                return None, too_large(s, None, fixed, bool(sources))
            docs = store.get(where={"source": {"$in": list(sources)}} if sources else None)
            corpus = Corpus.from_chunks(docs, version, s.tokenizer)
            with self._lock:
                self._corpora[key] = corpus
                while len(self._corpora) > self.KEEP:
                    self._corpora.pop(next(iter(self._corpora)))
        why = too_large(s, corpus.tokens, fixed, bool(sources))
        return (None, why) if why else (corpus, "")

    @staticmethod
    def messages(corpus: Corpus) -> list:
        """The prompt whose reading is kept: the instructions, the examples and every document (then a stand-in
        question, which the next prompt does not share)."""
        from rag.prompt import WHOLE as template

        return template.invoke(corpus.reading).to_messages()

    def ready(self, corpus: Corpus, llm: Any) -> bool:
        """Whether a question can be answered with `corpus` in view at once (a backend without saved states always
        can)."""
        if corpus.key not in self._ready and (not isinstance(llm, KeepsState) or llm.has_state(self.messages(corpus))):
            self._ready.add(corpus.key)
        return corpus.key in self._ready

    def read(self, corpus: Corpus, llm: Any, embedder: Embeddings, progress: bool = False) -> dict[str, Any]:
        """Read `corpus` now (restored when saved); a progress bar on a terminal. Returns how, seconds, tokens,
        documents."""
        started = time.perf_counter()
        bar = None
        if progress and isinstance(llm, KeepsState):
            from tqdm import tqdm

            bar = tqdm(total=0, desc="reading the documents", unit="token", leave=False)

        def step(done: int, total: int) -> None:
            bar.total, bar.n = total, done
            bar.refresh()

        try:
            how = self._prime(corpus, llm, embedder, step if bar is not None else None)
        finally:
            if bar is not None:
                bar.close()
        return {
            "how": how,
            "seconds": round(time.perf_counter() - started, 1),
            "tokens": corpus.tokens,
            "documents": len(corpus.sources),
        }

    def read_in_background(self, corpus: Corpus, llm: Any, embedder: Embeddings) -> None:
        """Read `corpus` on a thread, once at a time for each corpus."""
        with self._lock:
            if corpus.key in self._reading:
                return
            self._reading.add(corpus.key)

        def run() -> None:
            started = time.perf_counter()
            try:
                how = self._prime(corpus, llm, embedder)
                log.info(
                    "the documents are read (%s, %.1f s): answering with the whole corpus in view",
                    how,
                    time.perf_counter() - started,
                )
            except Exception as exc:
                log.warning("could not read the documents whole (%s); answering from retrieved passages", exc)
            finally:
                with self._lock:
                    self._reading.discard(corpus.key)

        threading.Thread(target=run, name="rag-read-corpus", daemon=True).start()

    def _prime(
        self, corpus: Corpus, llm: Any, embedder: Embeddings, progress: Callable[[int, int], None] | None = None
    ) -> str:
        corpus.embed(embedder)
        if isinstance(llm, KeepsState):
            return llm.prime(self.messages(corpus), progress=progress)
        return (
            "sent"  # a backend without saved states reads the documents with each question (its server may cache them)
        )


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


@functools.cache
def fixed_tokens(tokenizer: str) -> int:
    """The estimated length of the instructions and worked examples that come before the documents."""
    from rag.prompt import WHOLE as template

    messages = template.invoke({"passages": "", "conversation": "", "question": "", "shape": ""}).to_messages()
    return round(sum(count_tokens(m.text, tokenizer) + 5 for m in messages) * _MARGIN)


def budget(settings: Settings, fixed_tokens: int) -> int:
    """Tokens the documents may take: the context less the fixed instructions, the longest answer and room for a
    question with its conversation."""
    return settings.llm_n_ctx - fixed_tokens - settings.deep_max_tokens - _ROOM


def not_allowed(settings: Settings, backend: str) -> str | None:
    """Why the settings or the backend keep to retrieved passages whatever the documents (None: they do not)."""
    mode = settings.answer_mode
    if mode == "retrieved":
        return "RAG_ANSWER_MODE=retrieved"
    if backend == "extractive":
        return "the extractive backend has no model to read the documents"
    if backend == "openai" and mode == "auto":
        return (
            "the openai backend's context size is unknown here "
            "(RAG_ANSWER_MODE=whole reads whole when they fit RAG_LLM_N_CTX)"
        )
    return None


def too_large(settings: Settings, total_tokens: int | None, fixed_tokens: int, chosen: bool = False) -> str | None:
    """Why the documents cannot be read whole: their estimated length (None: more chunks than could ever fit) is
    over what the context leaves them (None: they fit)."""
    what = "the chosen documents" if chosen else "the indexed documents"
    room = budget(settings, fixed_tokens)
    if total_tokens is None or total_tokens > room:
        size = "more" if total_tokens is None else f"about {total_tokens:,}"
        return (
            f"{what} take {size} tokens; {room:,} fit beside the instructions "
            f"in the model's {settings.llm_n_ctx:,}-token context"
        )
    return None


__all__ = [
    "RETRIEVED",
    "WHOLE",
    "Corpus",
    "Reader",
    "Way",
    "budget",
    "fixed_tokens",
    "not_allowed",
    "render",
    "too_large",
]
