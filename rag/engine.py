"""The library's front door: one object that holds the settings, the embedder, the model and the open index."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rag import embed, lexical, retrieve, store
from rag.catalog import Catalog
from rag.config import LLMBackend, QueryParams, RetrieveMode, Settings, load_settings
from rag.errors import InputError, LoadError
from rag.llm import make_chat_model
from rag.store import reaching_services
from rag.text import normalize
from rag.whole import Reader

if TYPE_CHECKING:  # answering, ingestion and parsing load on first use: `rag search` never imports them
    from langchain_core.embeddings import Embeddings
    from langchain_core.language_models import BaseChatModel

    from rag import answer, condense, conversations, index, load, whole

log = logging.getLogger(__name__)

_UNSET: Any = object()


class Engine:
    """Ingest, search and answer over one index; heavy parts load on first use and stay loaded.

    Every part can be passed in instead (tests and tools swap one without touching the others): `embedder`, `llm`
    (the chat model of the configured backend, `settings.llm_backend`), `store` (an open collection) and `retriever`.
    `ingest` reopens the live collection afterwards, so a store passed in is replaced then.
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        embedder: Embeddings | None = None,
        llm: BaseChatModel | None = _UNSET,
        store: store.Store | None = None,
        retriever: retrieve.HybridRetriever | None = None,
    ) -> None:
        self.settings = settings or load_settings()
        self.catalog = Catalog(self.settings)
        self._llms: dict[str, BaseChatModel | None] = {} if llm is _UNSET else {self.settings.llm_backend: llm}
        if embedder is not None:
            self.embedder = embedder
        self._index = _OpenIndex(self.catalog, lambda: self.embedder, store)
        self._retriever = retriever
        self._serving = None
        self._background = False  # a serving process: the documents are read whole in the background
        self._reader = Reader(self.settings)
        self._follows = store is None and retriever is None  # parts passed in are kept as they are
        self._checked = time.monotonic()
        self._why_not: dict[str, str] = {}  # source -> why this process's last ingestion of it did not index it

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

    def retriever(
        self, k: int | None = None, mode: RetrieveMode | None = None, mmr: bool | None = None, sources: tuple[str, ...] | None = None
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

    def llm(self, backend: LLMBackend | None = None) -> BaseChatModel | None:
        """The chat model for `backend` (default: settings), loaded once and kept; None for extractive."""
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
                    question, history, corpus=way.corpus, embedder=self.embedder, llm=self.llm(params.backend), settings=self.settings
                )
            else:
                events = answer.stream(
                    question,
                    history,
                    retriever=self.retriever(k=params.k, mode=params.mode, sources=sources),
                    embedder=self.embedder,
                    llm=self.llm(params.backend),
                    settings=self.settings,
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
    def way(self, sources: tuple[str, ...] | None = None, backend: LLMBackend | None = None, for_question: bool = False) -> whole.Way:
        """How a question is answered now, and why: with every indexed document (or every one of `sources`) in the
        model's view when they fit its context (`settings.answer_mode`), else from retrieved passages. `for_question`:
        a serving process whose saved reading of these documents is not ready yet starts reading them in the
        background and answers from retrieved passages meanwhile; any other process reads them before answering."""
        from rag import whole

        name = backend or self.settings.llm_backend
        if self._retriever is not None:  # a retriever passed in decides what is seen
            return whole.Way(whole.RETRIEVED, "a retriever was passed in")
        why = whole.plan(self.settings, name, 0, 0)  # what the settings and backend allow, before reading the index
        if why is not None:
            return whole.Way(whole.RETRIEVED, why)
        self.follow()
        return self._reader.way(
            self.store, self.lexical.stamp, sources, name, self.llm(name), self.embedder, background=for_question and self._background
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
            raise InputError(f"the conversation has {len(turns)} earlier turns; the limit is {s.max_history_turns}: start a new chat")
        size = sum(len(user) + len(reply) for user, reply in turns)
        if size > s.max_history_chars or any(len(user) > s.max_question_chars for user, _ in turns):
            raise InputError(f"the conversation so far is too long ({size} characters); start a new chat")
        return question, turns

    def ask(self, question: str, history: condense.History | None = None, params: QueryParams | None = None) -> answer.Answer:
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
        self, query: str, k: int | None = None, mode: RetrieveMode | None = None, sources: tuple[str, ...] | list[str] | None = None
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
    def open_for_search(self) -> None:
        """Open the index and load the query encoder, side by side when the encoder is a cached ONNX copy (a cold
        `rag search` measured ~0.4 s sooner); otherwise the encoder first (its session starts slower once the Chroma
        client runs, and PyTorch is not imported beside other modules). Nothing happens without an index."""
        if not self.has_index():
            return
        cached = getattr(self.embedder, "query_encoder_cached", None)
        loading = None
        if cached is not None and cached():
            loading = threading.Thread(target=self.embedder.embed_query, args=("warm up",), name="query-encoder", daemon=True)
            loading.start()
        else:
            self.embedder.embed_query("warm up")
        try:
            _ = self.lexical  # opens the store too
        finally:
            if loading is not None:
                loading.join()

    def warm_up_model(self, backend: LLMBackend | None = None) -> None:
        """Load the answering model of `backend` (default: settings) and its cached prompt prefix (a command runs this
        beside retrieval)."""
        from rag import answer

        answer.warm_up(self.llm(backend))

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
        if not self._follows or not self._index.is_open or time.monotonic() - self._checked < self.settings.index_refresh_s:
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
    def ingest(self, paths: list[Path] | None = None, rebuild: bool = False, progress: bool = False) -> index.IngestReport:
        from rag import index

        report = index.ingest(self.settings, self.embedder, paths, rebuild=rebuild, progress=progress, in_server=self._serving is not None)
        self._index.drop()  # the live collection or its chunks may have changed
        for src in (*report.added, *report.updated, *report.skipped, *report.deleted):
            self._why_not.pop(src, None)
        self._why_not.update(report.failed)
        self._why_not.update({src: f"the same content as {other}, stored once" for src, other in report.duplicates.items()})
        if self._background and (report.chunks_added or report.chunks_deleted):
            self.way(for_question=True)  # a serving process reads the changed documents whole in the background
        return report

    def preview(self, paths: list[Path]) -> list[retrieve.Hit]:
        """The chunks `ingest(paths)` would store, made the same way but neither embedded nor stored; their
        `chunk_id` is "source#position". Files that cannot be read are left out (they are logged)."""
        from rag import index

        chunks, _ = index.preview(self.settings, paths)
        return [retrieve.Hit.from_document(c) for c in chunks]

    def supports(self, claim: str, passage: str, question: str = "") -> bool:
        """Whether the citation check keeps `claim` citing a passage of text `passage` (the check answers use), as an
        answer to `question`."""
        from langchain_core.documents import Document as LCDocument

        from rag import cite, context

        shown = context.Passage.from_document(1, LCDocument(page_content=normalize(passage), metadata={}))
        return bool(cite.check(f"{claim} [1]", [shown], self.embedder, question).citations)

    @reaching_services
    def chunks(self, source: str | None = None) -> list[retrieve.Hit]:
        """Every stored chunk (of one source, when given), as hits without a score."""
        docs = self.store.get(where={"source": source} if source else None)
        return [retrieve.Hit.from_document(d) for d in docs]

    def document_text(self, source: str) -> str:
        """The whole text of an indexed document as ingestion read it (chunk offsets point into it)."""
        from rag import load

        return load.load(Path(source), source=source, timeout=self.settings.parse_timeout_s).text

    @reaching_services
    def document(self, source: str) -> load.Document:
        """An indexed document whole, as ingestion read it: `title`, `text` (citation and chunk offsets point into it),
        `source_url` (None without one) and, for a PDF, `pages` (where each starts; `page_at(offset)`). `source` as
        `rag search` shows it, or a unique file name; InputError for one that is not indexed, LoadError when its file
        no longer holds the text that was indexed (the offsets would point at the wrong words)."""
        from rag import load

        (source,) = self.check_sources([source])
        stored = self.store.get(where={"source": source}, with_text=False)
        digest = next((d.metadata["doc_hash"] for d in stored if d.metadata.get("doc_hash")), None)
        path = Path(source)
        # A source id is relative to where ingestion ran: the corpus directory's parent, when not the current one.
        for candidate in dict.fromkeys([path] if path.is_absolute() else [path, self.settings.corpus_dir.parent / path]):
            try:
                doc = load.load(candidate, source=source, timeout=self.settings.parse_timeout_s)
            except LoadError:
                continue
            if digest is None or doc.digest == digest:
                return doc
        raise LoadError(f"{source} has changed, moved or gone since it was indexed; run `rag ingest` to index it again")

    @reaching_services
    def documents(self) -> list[dict]:
        """The indexed documents: title, source, chunk count and when each was indexed, by source."""
        docs: dict[str, dict] = {}
        for meta in (d.metadata for d in self.store.get(with_text=False)):
            entry = docs.setdefault(meta["source"], {"source": meta["source"], "title": meta.get("title", ""), "chunks": 0})
            entry["chunks"] += 1
        stamps = self.store.indexed_at()
        for src, entry in docs.items():
            entry["indexed_at"] = datetime.fromtimestamp(stamps.get(src, 0), UTC).isoformat(timespec="seconds")
        return sorted(docs.values(), key=lambda d: d["source"])

    @reaching_services
    def not_indexed(self) -> list[dict]:
        """The files ingestion finds in the corpus that are not indexed (they failed, say, or were never ingested):
        source, and the reason this process's last ingestion gave ("not indexed" when none did), by source."""
        from rag import index

        found = index.IngestReport()  # broken or outside-pointing symlinks are reported here
        files, _ = index.discover([self.settings.corpus_dir], found)
        indexed = self.store.sources() if self.has_index() else set()
        out = {src: self._why_not.get(src, "not indexed") for _, src in files if src not in indexed}
        out |= {src: why for src, why in found.failed.items() if src not in indexed}
        return [{"source": src, "reason": out[src]} for src in sorted(out)]

    @property
    def supported_types(self) -> tuple[str, ...]:
        from rag import load

        return tuple(sorted(load.SUPPORTED_EXTS))

    def add_file(self, name: str, data: bytes) -> index.IngestReport:
        """Save an uploaded file into the corpus and index it."""
        from rag import load

        target = self._corpus_path(name)
        if Path(name).suffix.lower() not in load.SUPPORTED_EXTS:
            raise InputError(f"cannot index {Path(name).name}: supported types are {', '.join(sorted(load.SUPPORTED_EXTS))}")
        if len(data) > self.settings.max_file_mb * 1024 * 1024:
            raise InputError(f"{Path(name).name} is over the {self.settings.max_file_mb:g} MB limit")
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.upload")
        tmp.write_bytes(data)
        tmp.replace(target)
        return self.ingest()

    def remove_document(self, source: str) -> index.IngestReport:
        """Delete a file of the corpus, indexed or not (one that failed, say), and its chunks."""
        path = Path(source)
        corpus = self.settings.corpus_dir.resolve()
        if not path.resolve().is_relative_to(corpus) or path.resolve() == corpus:
            raise InputError(f"{source} is not a document of the corpus {self.settings.corpus_dir}")
        path.unlink(missing_ok=True)
        return self.ingest()

    def _corpus_path(self, name: str) -> Path:
        from rag import load

        clean = Path(name).name
        if not clean or clean.startswith(".") or clean.endswith(load.SIDECAR_SUFFIX):
            raise InputError(f"{name!r} is not an acceptable file name")
        return self.settings.corpus_dir / clean

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
