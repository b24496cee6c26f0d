"""The library's front door: one object that holds the settings, the embedder and the open index."""

from __future__ import annotations

import logging
from functools import cached_property
from pathlib import Path

from langchain_core.embeddings import Embeddings

from rag import embed, index, retrieve, store
from rag.config import Settings, load_settings

log = logging.getLogger(__name__)


class Engine:
    """Ingest, search and answer over one index; heavy parts load on first use and stay loaded."""

    def __init__(self, settings: Settings | None = None, embedder: Embeddings | None = None) -> None:
        self.settings = settings or load_settings()
        self._embedder = embedder

    @cached_property
    def embedder(self) -> Embeddings:
        s = self.settings
        return self._embedder or embed.make_embedder(s.embed_backend, s.embed_model, s.embed_batch_size, s.embed_device)

    @cached_property
    def store(self) -> store.Store:
        return store.open_store(self.settings, self.embedder)

    def ingest(self, paths: list[Path] | None = None, rebuild: bool = False, progress: bool = False) -> index.IngestReport:
        report = index.ingest(self.settings, self.embedder, paths, rebuild=rebuild, progress=progress)
        self.__dict__.pop("store", None)  # the active collection may have changed
        return report

    def search(self, query: str, k: int = 5) -> list[retrieve.Hit]:
        return retrieve.dense_search(self.store, self.embedder, query, k)
