"""Corpus administration: what is indexed and what is not (with why, when this process's ingestion said), and adding
a file to the corpus or removing one, each followed by an ingestion."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from rag.config import Settings
from rag.errors import InputError
from rag.store import Store, reaching_services

if TYPE_CHECKING:
    from rag import index


class CorpusAdmin:
    """The corpus directory (`settings.corpus_dir`) against the live collection (`store`, asked each time: an ingestion
    reopens it); `has_index` says whether there is one, `ingest` indexes the corpus (the engine's, so what is open is
    reopened after it)."""

    def __init__(
        self,
        settings: Settings,
        store: Callable[[], Store],
        has_index: Callable[[], bool],
        ingest: Callable[[], index.IngestReport],
    ) -> None:
        self.settings = settings
        self._store, self._has_index, self._ingest = store, has_index, ingest
        self._why_not: dict[str, str] = {}  # source -> why this process's last ingestion of it did not index it

    def note(self, report: index.IngestReport) -> None:
        """Remember why an ingestion of this process left files out (and forget it for the files it took in)."""
        for src in (*report.added, *report.updated, *report.skipped, *report.deleted):
            self._why_not.pop(src, None)
        self._why_not.update(report.failed)
        self._why_not.update(
            {src: f"the same content as {other}, stored once" for src, other in report.duplicates.items()}
        )

    @reaching_services
    def documents(self) -> list[dict]:
        """The indexed documents: title, source, chunk count and when each was indexed, by source."""
        docs: dict[str, dict] = {}
        store = self._store()
        for meta in (d.metadata for d in store.get(with_text=False)):
            entry = docs.setdefault(
                meta["source"], {"source": meta["source"], "title": meta.get("title", ""), "chunks": 0}
            )
            entry["chunks"] += 1
        stamps = store.indexed_at()
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
        indexed = self._store().sources() if self._has_index() else set()
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
            raise InputError(
                f"cannot index {Path(name).name}: supported types are {', '.join(sorted(load.SUPPORTED_EXTS))}"
            )
        if len(data) > self.settings.max_file_mb * 1024 * 1024:
            raise InputError(f"{Path(name).name} is over the {self.settings.max_file_mb:g} MB limit")
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.upload")
        tmp.write_bytes(data)
        tmp.replace(target)
        return self._ingest()

    def remove_document(self, source: str) -> index.IngestReport:
        """Delete a file of the corpus, indexed or not (one that failed, say), and its chunks."""
        path = Path(source)
        corpus = self.settings.corpus_dir.resolve()
        if not path.resolve().is_relative_to(corpus) or path.resolve() == corpus:
            raise InputError(f"{source} is not a document of the corpus {self.settings.corpus_dir}")
        path.unlink(missing_ok=True)
        return self._ingest()

    def _corpus_path(self, name: str) -> Path:
        from rag import load

        clean = Path(name).name
        if not clean or clean.startswith(".") or clean.endswith(load.SIDECAR_SUFFIX):
            raise InputError(f"{name!r} is not an acceptable file name")
        return self.settings.corpus_dir / clean
