"""The library's front door: one object that holds the settings, the embedder and the open index."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path

from langchain_core.embeddings import Embeddings

from rag import answer, condense, embed, index, lexical, load, retrieve, store
from rag.config import QueryParams, Settings, load_settings
from rag.errors import ConfigError, InputError
from rag.llm import make_chat_model

log = logging.getLogger(__name__)


class Engine:
    """Ingest, search and answer over one index; heavy parts load on first use and stay loaded."""

    def __init__(self, settings: Settings | None = None, embedder: Embeddings | None = None) -> None:
        self.settings = settings or load_settings()
        self._embedder = embedder
        self._serving = None

    def release_serving(self) -> None:
        if self._serving is not None:
            self._serving.close()
            self._serving = None

    def hold_for_serving(self) -> None:
        """Keep other processes from writing this embedded index while this one serves it."""
        if self._serving is None and not self.settings.chroma_url:
            self._serving = store.hold_for_serving(self.settings)

    @cached_property
    def embedder(self) -> Embeddings:
        s = self.settings
        return self._embedder or embed.make_embedder(
            s.embed_backend, s.embed_model, s.embed_batch_size, s.embed_device, s.embed_query_backend
        )

    @cached_property
    def store(self) -> store.Store:
        return store.open_store(self.settings, self.embedder)

    @cached_property
    def lexical(self) -> lexical.LexicalIndex:
        """The saved BM25 index when it matches the manifest; otherwise one built in memory from the store."""
        manifest = store.read_manifest(self.settings.index_dir) or {}
        db = self.store
        saved = lexical.LexicalIndex.load(index.lexical_dir(self.settings, db.collection))
        if saved is not None and saved.stamp == manifest.get("lexical_stamp"):
            return saved
        log.warning("lexical index missing or stale; building it in memory (run `rag ingest` to save it)")
        return index.build_lexical(db, self.settings, save=False)

    def retriever(self, k: int = 5, mode: str = "hybrid", mmr: bool = False) -> retrieve.HybridRetriever:
        if mode not in retrieve.MODES:
            raise ConfigError(f"unknown retrieval mode {mode!r}; valid: {', '.join(retrieve.MODES)}")
        s = self.settings
        return retrieve.HybridRetriever(
            store=self.store,
            embedder=self.embedder,
            lexical=self.lexical if mode != "dense" else None,
            k=k,
            candidates=max(s.retrieve_candidates, k),
            rrf_k=s.rrf_k,
            mode=mode,
            mmr=mmr,
        )

    def llm(self, backend: str | None = None):
        """The chat model for `backend` (default: settings), loaded once and kept; None for extractive."""
        name = backend or self.settings.llm_backend
        models = self.__dict__.setdefault("_llms", {})
        if name not in models:
            models[name] = make_chat_model(name, self.settings)
        return models[name]

    def ask_stream(
        self, question: str, history: condense.History | None = None, params: QueryParams | None = None
    ) -> Iterator[answer.Event]:
        """Stream one answer: an `evidence` event, `token` events, then the checked `answer`."""
        question = question.strip()
        if not question:
            raise InputError("the question is empty; type a question")
        if len(question) > self.settings.max_question_chars:
            raise InputError(f"the question is {len(question)} characters long; the limit is {self.settings.max_question_chars}")
        params = params or QueryParams()
        s = self.settings
        llm = self.llm(params.backend)
        yield from answer.stream(
            question,
            list(history or []),
            self.retriever(k=params.k or s.retrieve_k, mode=params.mode or s.retrieve_mode, mmr=s.retrieve_mmr),
            self.embedder,
            llm,
            context_tokens=s.context_tokens,
            context_margin=s.context_margin,
            tokenizer=s.tokenizer,
            condense_with_llm=s.condense,
            llm_timeout=s.llm_timeout_s,
        )

    def warm_up(self) -> None:
        """Load everything a first question needs (embedder, index, BM25, model, cached prompt prefix)."""
        self.embedder.embed_query("warm up")
        _ = self.lexical
        answer.warm_up(self.llm())

    def ask(self, question: str, history: condense.History | None = None, params: QueryParams | None = None) -> answer.Answer:
        final = None
        for event in self.ask_stream(question, history, params):
            if event.kind == "answer":
                final = event.data
        assert final is not None
        return final

    def ingest(self, paths: list[Path] | None = None, rebuild: bool = False, progress: bool = False) -> index.IngestReport:
        report = index.ingest(self.settings, self.embedder, paths, rebuild=rebuild, progress=progress, in_server=self._serving is not None)
        for cached in ("store", "lexical"):  # the active collection or its chunks may have changed
            self.__dict__.pop(cached, None)
        return report

    supported_types = tuple(sorted(load.SUPPORTED_EXTS))

    def has_index(self) -> bool:
        return store.read_manifest(self.settings.index_dir) is not None

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

    def add_file(self, name: str, data: bytes) -> index.IngestReport:
        """Save an uploaded file into the corpus and index it."""
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
        """Delete a document of the corpus and its chunks."""
        path = Path(source)
        corpus = self.settings.corpus_dir.resolve()
        if not path.resolve().is_relative_to(corpus) or path.resolve() == corpus:
            raise InputError(f"{source} is not a document of the corpus {self.settings.corpus_dir}")
        path.unlink(missing_ok=True)
        return self.ingest()

    def _corpus_path(self, name: str) -> Path:
        clean = Path(name).name
        if not clean or clean.startswith(".") or clean.endswith(load.SIDECAR_SUFFIX):
            raise InputError(f"{name!r} is not an acceptable file name")
        return self.settings.corpus_dir / clean

    def search(self, query: str, k: int = 5, mode: str | None = None) -> list[retrieve.Hit]:
        docs = self.retriever(k=k, mode=mode or self.settings.retrieve_mode).invoke(query)
        return [retrieve.Hit.from_document(d) for d in docs]
