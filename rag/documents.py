"""The indexed documents read back: one whole as ingestion read it (the viewer's text, citation offsets point into
it), its text alone, its stored chunks; and the chunks ingestion would make of files, without storing them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from rag.config import Settings
from rag.errors import LoadError
from rag.retrieve import Hit
from rag.store import Store, reaching_services

if TYPE_CHECKING:
    from rag import load


class Documents:
    """Reads the documents of the live collection (`store`, asked each time: an ingestion reopens it); `check_sources`
    resolves a source as `rag search` shows it, or a unique file name, to the indexed one (InputError otherwise)."""

    def __init__(
        self,
        settings: Settings,
        store: Callable[[], Store],
        check_sources: Callable[[list[str]], tuple[str, ...] | None],
    ) -> None:
        self.settings = settings
        self._store, self._check_sources = store, check_sources

    @reaching_services
    def document(self, source: str) -> load.Document:
        """An indexed document whole, as ingestion read it: `title`, `text` (citation and chunk offsets point into it),
        `source_url` (None without one) and, for a PDF, `pages` (where each starts; `page_at(offset)`). `source` as
        `rag search` shows it, or a unique file name; InputError for one that is not indexed, LoadError when its file
        no longer holds the text that was indexed (the offsets would point at the wrong words)."""
        from rag import load

        (source,) = self._check_sources([source])
        stored = self._store().get(where={"source": source}, with_text=False)
        digest = next((d.metadata["doc_hash"] for d in stored if d.metadata.get("doc_hash")), None)
        path = Path(source)
        # A source id is relative to where ingestion ran: the corpus directory's parent, when not the current one.
        for candidate in dict.fromkeys(
            [path] if path.is_absolute() else [path, self.settings.corpus_dir.parent / path]
        ):
            try:
                doc = load.load(candidate, source=source, timeout=self.settings.parse_timeout_s)
            except LoadError:
                continue
            if digest is None or doc.digest == digest:
                return doc
        raise LoadError(f"{source} has changed, moved or gone since it was indexed; run `rag ingest` to index it again")

    def document_text(self, source: str) -> str:
        """The whole text of an indexed document as ingestion read it (chunk offsets point into it)."""
        from rag import load

        return load.load(Path(source), source=source, timeout=self.settings.parse_timeout_s).text

    @reaching_services
    def chunks(self, source: str | None = None) -> list[Hit]:
        """Every stored chunk (of one source, when given), as hits without a score."""
        docs = self._store().get(where={"source": source} if source else None)
        return [Hit.from_document(d) for d in docs]

    def preview(self, paths: list[Path]) -> list[Hit]:
        """The chunks ingesting `paths` would store, made the same way but neither embedded nor stored; their
        `chunk_id` is "source#position". Files that cannot be read are left out (they are logged)."""
        from rag import index

        chunks, _ = index.preview(self.settings, paths)
        return [Hit.from_document(c) for c in chunks]
