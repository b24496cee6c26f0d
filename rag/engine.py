"""The library's front door: one object that holds the settings, the embedder, the model and the open index."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rag import embed, lexical, retrieve, store
from rag.admin import CorpusAdmin
from rag.catalog import Catalog
from rag.config import LLMBackend, QueryParams, RetrieveMode, Settings, at_depth, load_settings
from rag.documents import Documents
from rag.errors import InputError
from rag.llm import NoModel, make_chat_model
from rag.store import reaching_services
from rag.text import normalize
from rag.whole import Reader

if TYPE_CHECKING:  # answering, ingestion and parsing load on first use: `rag search` never imports them
    from langchain_core.embeddings import Embeddings
    from langchain_core.language_models import BaseChatModel

    from rag import answer, condense, conversations, index, whole

log = logging.getLogger(__name__)


class Engine:
    """Ingest, search and answer over one index; heavy parts load on first use and stay loaded.

    Every part can be passed in instead (tests and tools swap one without touching the others): `embedder`, `llm`
    (the chat model of the configured backend, `settings.llm_backend`), `store` (an open collection) and `retriever`.
    `ingest` reopens the live collection afterwards, so a store passed in is replaced then. Reading the indexed
    documents back is `docs`'s job, managing the corpus `admin`'s.
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        embedder: Embeddings | None = None,
        llm: BaseChatModel | NoModel | None = None,
        store: store.Store | None = None,
        retriever: retrieve.HybridRetriever | None = None,
    ) -> None:
        self.settings = settings or load_settings()
        self.catalog = Catalog(self.settings)
        self._llms: dict[str, BaseChatModel | NoModel] = {} if llm is None else {self.settings.llm_backend: llm}
        if embedder is not None:
            self.embedder = embedder
        self._index = _OpenIndex(self.catalog, lambda: self.embedder, store)
        self._retriever = retriever
        self._serving = None
        self._background = False  # a serving process: the documents are read whole in the background
        self._reader = Reader(self.settings)
        self._follows = store is None and retriever is None  # parts passed in are kept as they are
        self._checked = time.monotonic()

    # -- the parts -------------------------------------------------------------------------------
    @cached_property
    def embedder(self) -> Embeddings:
        return embed.make_embedder(self.settings)

    @property
    def store(self) -> store.Store:
        """The live collection, opened on first use."""
        return self._index.store

    @cached_property
    def conversations(self) -> conversations.Conversations:
        """The saved chat conversations (`settings.conversations_url`)."""
        from rag.conversations import Conversations

        return Conversations(self.settings.conversations_url)

    @property
    def lexical(self) -> lexical.LexicalIndex:
        """The saved BM25 index when it matches the manifest; otherwise one built in memory from the store."""
        return self._index.lexical

    @cached_property
    def docs(self) -> Documents:
        """The indexed documents read back: one whole (`document`), its text, its chunks; `preview` of what ingesting
        files would store."""
        return Documents(self.settings, lambda: self.store, self.check_sources)

    @cached_property
    def admin(self) -> CorpusAdmin:
        """Corpus administration: the indexed documents and the corpus files that are not, adding and removing files."""
        return CorpusAdmin(self.settings, lambda: self.store, self.has_index, self.ingest)

    def retriever(
        self,
        k: int | None = None,
        mode: RetrieveMode | None = None,
        mmr: bool | None = None,
        sources: tuple[str, ...] | None = None,
    ) -> retrieve.HybridRetriever:
        """The retriever passed in, or the hybrid one over this index; unset arguments come from the settings;
        `sources` (checked with `check_sources`) keeps it to those documents."""
        if self._retriever is not None:
            return self._retriever.only(sources) if sources else self._retriever
        self.follow()
        s = self.settings
        k, mode = k or s.retrieve_k, mode or s.retrieve_mode
        return retrieve.HybridRetriever(
            store=self.store,
            embedder=self.embedder,
            lexical=self.lexical if mode != "dense" else None,
            k=k,
            candidates=max(s.retrieve_candidates, k),
            rrf_k=s.rrf_k,
            mode=mode,
            mmr=s.retrieve_mmr if mmr is None else mmr,
            sources=sources or None,
        )

    def llm(self, backend: LLMBackend | None = None) -> BaseChatModel | NoModel:
        """The chat model for `backend` (default: settings), loaded once and kept; `NoModel` for extractive."""
        name = backend or self.settings.llm_backend
        if name not in self._llms:
            self._llms[name] = make_chat_model(name, self.settings)
        return self._llms[name]

    # -- answering -------------------------------------------------------------------------------
    @reaching_services
    def ask_stream(
        self, question: str, history: condense.History | None = None, params: QueryParams | None = None
    ) -> Iterator[answer.Event]:
        """Stream one answer: an `evidence` event, `token` events, then the checked `answer`. The question and the
        conversation come from clients: they are normalised and bounded before any model work."""
        from rag import answer

        question, history = self.check_input(question, history or [])
        params = params or QueryParams()
        for again in (False, True):
            sources = self.check_sources(params.sources)
            way = self.way(sources, params.backend, for_question=True)
            if way.whole:
                events = answer.stream_whole(
                    question,
                    history,
                    corpus=way.corpus,
                    embedder=self.embedder,
                    llm=self.llm(params.backend),
                    settings=self.settings,
                )
            else:
                events = answer.stream(
                    question,
                    history,
                    retriever=self.retriever(k=params.k, mode=params.mode, sources=sources),
                    embedder=self.embedder,
                    llm=self.llm(params.backend),
                    settings=at_depth(self.settings, params.depth),
                )
            try:
                first = next(events, None)  # the evidence: retrieval is done
            except Exception as exc:
                if again or not self._reopened_after(exc):
                    raise
                continue
            if first is not None:
                yield first
                yield from events
            return

    # -- the whole corpus in view ----------------------------------------------------------------
    def way(
        self, sources: tuple[str, ...] | None = None, backend: LLMBackend | None = None, for_question: bool = False
    ) -> whole.Way:
        """How a question is answered now, and why: with every indexed document (or every one of `sources`) in the
        model's view when they fit its context (`settings.answer_mode`), else from retrieved passages. `for_question`:
        a serving process whose saved reading of these documents is not ready yet starts reading them in the
        background and answers from retrieved passages meanwhile; any other process reads them before answering."""
        from rag import whole

        name = backend or self.settings.llm_backend
        if self._retriever is not None:  # a retriever passed in decides what is seen
            return whole.Way(whole.RETRIEVED, "a retriever was passed in")
        why = whole.not_allowed(self.settings, name)  # before reading the index
        if why is not None:
            return whole.Way(whole.RETRIEVED, why)
        self.follow()
        return self._reader.way(
            self.store,
            self.lexical.stamp,
            sources,
            name,
            self.llm(name),
            self.embedder,
            background=for_question and self._background,
        )

    def read_corpus(self, progress: bool = False) -> dict[str, Any] | None:
        """Read the indexed documents into the model's saved state now (after an ingest that changed them), so later
        questions and processes only restore it; None when the retrieved way is in use. Returns how it went: `how`
        (read, restored or primed), `seconds`, `tokens` and `documents`."""
        way = self.way()
        if not way.whole:
            return None
        return self._reader.read(way.corpus, self.llm(), self.embedder, progress=progress)

    def check_input(self, question: str, history: condense.History) -> tuple[str, condense.History]:
        """The question and earlier turns normalised, or InputError saying what is wrong (empty, too long, too many
        turns): the check `ask_stream` makes first, for callers that must refuse before queueing."""
        s = self.settings
        question = normalize(question)
        if not question:
            raise InputError("the question is empty; type a question")
        if len(question) > s.max_question_chars:
            raise InputError(f"the question is {len(question)} characters long; the limit is {s.max_question_chars}")
        turns = [(normalize(user), normalize(reply)) for user, reply in history]
        if len(turns) > s.max_history_turns:
            raise InputError(
                f"the conversation has {len(turns)} earlier turns; the limit is {s.max_history_turns}: start a new chat"
            )
        size = sum(len(user) + len(reply) for user, reply in turns)
        if size > s.max_history_chars or any(len(user) > s.max_question_chars for user, _ in turns):
            raise InputError(f"the conversation so far is too long ({size} characters); start a new chat")
        return question, turns

    def ask(
        self, question: str, history: condense.History | None = None, params: QueryParams | None = None
    ) -> answer.Answer:
        from rag import answer

        return answer.final(self.ask_stream(question, history, params))

    @reaching_services
    def check_sources(self, names: tuple[str, ...] | list[str] | None) -> tuple[str, ...] | None:
        """The indexed documents `names` point at (a source as `rag search` shows it, or a unique file name), or
        InputError naming the one that is not indexed; None or empty = every document."""
        if not names:
            return None
        self.follow()
        known = sorted(self.store.sources())
        by_name: dict[str, list[str]] = {}
        for src in known:
            by_name.setdefault(Path(src).name, []).append(src)
        out = []
        for name in names:
            name = name.strip()
            found = [name] if name in known else by_name.get(name, [])
            if len(found) != 1:
                shown = ", ".join(known[:8]) + (", …" if len(known) > 8 else "")
                why = "names several documents" if found else "is not an indexed document"
                raise InputError(f"{name!r} {why}; give one of: {shown}")
            out.append(found[0])
        return tuple(dict.fromkeys(out))

    @reaching_services
    def search(
        self,
        query: str,
        k: int | None = None,
        mode: RetrieveMode | None = None,
        sources: tuple[str, ...] | list[str] | None = None,
    ) -> list[retrieve.Hit]:
        """The top chunks for `query` (only of `sources` when given)."""
        try:
            docs = self.retriever(k=k, mode=mode, sources=self.check_sources(sources)).invoke(query)
        except Exception as exc:
            if not self._reopened_after(exc):
                raise
            docs = self.retriever(k=k, mode=mode, sources=self.check_sources(sources)).invoke(query)
        return [retrieve.Hit.from_document(d) for d in docs]

    @reaching_services
    def warm_up(self) -> None:
        """Load everything a first question needs (embedder, index, BM25, model, cached prompt prefix)."""
        from rag import answer

        self.embedder.embed_query("warm up")
        _ = self.lexical
        answer.warm_up(self.llm())

    # -- the index -------------------------------------------------------------------------------
    def follow(self) -> None:
        """Take in what other processes committed (other replicas' or ingest workers' changes to a shared index):
        at most every `index_refresh_s`, compare the manifest with what is open and reopen the live collection or
        reload its lexical index when either changed. Searching and answering call this; vectors on a Chroma server
        are current anyway, the lexical index is what goes stale. When the database does not answer, what is open
        keeps serving (a warning is logged)."""
        if (
            not self._follows
            or not self._index.is_open
            or time.monotonic() - self._checked < self.settings.index_refresh_s
        ):
            return
        self._checked = time.monotonic()
        try:
            manifest = self.catalog.manifest()
            if manifest is None:
                return
            if manifest["collection"] != self.store.name:
                log.info("the index was rebuilt elsewhere; opening %s", manifest["collection"])
                self._index.drop()
            elif manifest.get("lexical_stamp") != self.lexical.stamp:
                self._index.reload_lexical()
        except Exception as exc:
            error = store.unavailable(exc, self.settings)
            if error is None:
                raise
            log.warning("could not check the index for changes; answering from what is open: %s", error)

    def _reopened_after(self, exc: Exception) -> bool:
        """Whether `exc` says the open collection is gone (a rebuild elsewhere switched to a new one and dropped it
        between two looks at the manifest) and the live one is now open: then the read is worth one more try."""
        if not self._follows or not store.collection_gone(exc):
            return False
        old = self.store.name
        self._checked = float("-inf")
        self.follow()
        return self.store.name != old

    @reaching_services
    def has_index(self) -> bool:
        return self.catalog.manifest() is not None

    @reaching_services
    def ingest(
        self, paths: list[Path] | None = None, rebuild: bool = False, progress: bool = False
    ) -> index.IngestReport:
        from rag import index

        report = index.ingest(
            self.settings, self.embedder, paths, rebuild=rebuild, progress=progress, in_server=self._serving is not None
        )
        self._index.drop()  # the live collection or its chunks may have changed
        self.admin.note(report)
        if self._background and (report.chunks_added or report.chunks_deleted):
            self.way(for_question=True)  # a serving process reads the changed documents whole in the background
        return report

    # -- serving ---------------------------------------------------------------------------------
    def hold_for_serving(self) -> None:
        """Keep other processes from writing this embedded index while this one serves it."""
        self._background = True
        if self._serving is None and not self.settings.chroma_url:
            self._serving = self.catalog.hold_for_serving()

    def release_serving(self) -> None:
        if self._serving is not None:
            self._serving.close()
            self._serving = None


class _OpenIndex:
    """The live collection and its lexical index: opened on first use, dropped together when an ingestion or another
    process may have changed them, the lexical index reloaded alone when only its stamp moved."""

    def __init__(self, catalog: Catalog, embedder: Any, store: store.Store | None = None) -> None:
        self._catalog, self._embedder = catalog, embedder
        self._store, self._lexical = store, None

    @property
    def store(self) -> store.Store:
        if self._store is None:
            self._store = self._catalog.open(self._embedder())
        return self._store

    @property
    def lexical(self) -> lexical.LexicalIndex:
        if self._lexical is None:
            self._lexical = self._catalog.lexical(self.store)
        return self._lexical

    @property
    def is_open(self) -> bool:
        """Whether searching has opened it (only then is there anything to keep current)."""
        return self._lexical is not None

    def reload_lexical(self) -> None:
        self._lexical = self._catalog.lexical(self.store)  # swapped in whole, once loaded

    def drop(self) -> None:
        self._store, self._lexical = None, None
