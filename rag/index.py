"""Ingestion: discover files, plan what changed (load, dedupe, chunk), write it incrementally with LangChain's
indexing API, and commit the build through the catalog."""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import groupby
from pathlib import Path

from langchain_core.documents import Document as LCDocument
from langchain_core.embeddings import Embeddings

from rag import chunk, load
from rag.catalog import Catalog
from rag.config import Settings
from rag.embed import Remembered
from rag.errors import LoadError, RagError
from rag.store import Store

log = logging.getLogger(__name__)


@dataclass
class IngestReport:
    """What one ingestion run did, per document and per chunk."""

    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    duplicates: dict[str, str] = field(default_factory=dict)
    chunks_added: int = 0
    chunks_deleted: int = 0
    chunks_total: int = 0
    texts_embedded: int = 0
    embedded_ahead: int = 0
    seconds: float = 0.0
    collection: str = ""

    @property
    def ok(self) -> bool:
        return not self.failed

    def summary(self) -> str:
        return (
            f"{len(self.added)} added, {len(self.updated)} updated, {len(self.skipped)} skipped, "
            f"{len(self.deleted)} deleted, {len(self.failed)} failed"
            + (f", {len(self.duplicates)} duplicate" if self.duplicates else "")
            + f" ({self.chunks_added} chunks embedded, {self.chunks_deleted} removed, {self.chunks_total} in index) "
            f"in {self.seconds:.1f} s"
            + (f"; {self.embedded_ahead} embedded while waiting for another writer" if self.embedded_ahead else "")
        )


def source_id(path: Path) -> str:
    """A stable id for a file: relative to the working directory when inside it, else absolute."""
    resolved = path.absolute()
    try:
        return resolved.relative_to(Path.cwd()).as_posix()
    except ValueError:
        return resolved.as_posix()


def discover(paths: Iterable[Path], report: IngestReport) -> tuple[list[tuple[Path, str]], list[str]]:
    """Files to ingest (path, source id) and the source-id prefixes of the directories walked."""
    files: list[tuple[Path, str]] = []
    prefixes: list[str] = []
    for root in paths:
        if not root.exists():
            report.failed[source_id(root)] = "no such file or directory"
            continue
        if root.is_file():
            files.append((root, source_id(root)))
            continue
        prefixes.append(source_id(root).rstrip("/") + "/")
        real_root = root.resolve()
        for dirpath, dirnames, filenames in os.walk(root):  # does not follow directory symlinks: no loops
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in sorted(filenames):
                if name.startswith(".") or name.endswith(load.SIDECAR_SUFFIX):
                    continue
                path = Path(dirpath) / name
                if path.is_symlink():
                    try:
                        target = path.resolve(strict=True)
                    except (OSError, RuntimeError):
                        report.failed[source_id(path)] = "broken or looping symlink"
                        continue
                    if not target.is_relative_to(real_root):
                        report.failed[source_id(path)] = f"symlink points outside {root}; copy the file in instead"
                        continue
                files.append((path, source_id(path)))
    return files, prefixes


def ingest(
    settings: Settings,
    embedder: Embeddings,
    paths: list[Path] | None = None,
    rebuild: bool = False,
    progress: bool = False,
    in_server: bool = False,
) -> IngestReport:
    """Bring the index in line with `paths` (default: the corpus): add new, replace edited, remove deleted files."""
    started = time.perf_counter()
    report = IngestReport()
    catalog = Catalog(settings)
    ahead = None
    if settings.chroma_url:  # another writer may hold a shared index: embed what will be needed while waiting for it
        ahead = Remembered(embedder)
        embedder = ahead
    with catalog.writing(
        in_server=in_server,
        while_waiting=(lambda: _embed_ahead(catalog, ahead, paths, rebuild, report)) if ahead else None,
    ):
        build = catalog.begin(embedder, rebuild)
        report.collection = build.store.name
        damaged = build.store.reconcile()
        files, prefixes = discover(paths or [settings.corpus_dir], report)
        chunks = _plan(build.store, settings, files, prefixes, damaged, report)
        _write(build.store, chunks, embedder, settings.index_batch_size, progress, report)
        catalog.commit(build, embedder, changed=bool(report.chunks_added or report.chunks_deleted))
    report.seconds = time.perf_counter() - started
    return report


def preview(settings: Settings, paths: list[Path]) -> tuple[list[LCDocument], IngestReport]:
    """The chunks ingestion would store for `paths`, each with its id-to-be "source#position", without embedding or
    storing anything (to measure a chunking or a lexical index on a corpus); files that fail are in the report."""
    report = IngestReport()
    files, _ = discover(paths, report)
    chunks = []
    for doc in _load_all(files, settings, report):
        pieces = _to_documents(doc, doc.digest, settings)
        if _over_cap(pieces, doc.source, settings, report):
            continue
        for c in pieces:
            c.id = f"{doc.source}#{c.metadata['position']}"
            chunks.append(c)
    return chunks, report


def _plan(
    db: Store,
    settings: Settings,
    files: list[tuple[Path, str]],
    prefixes: list[str],
    damaged: set[str],
    report: IngestReport,
) -> list[LCDocument]:
    """Delete what vanished, then load each file and return the chunks of the new and changed ones; unchanged and
    duplicate files are recorded in the report and skipped, and so are files over the chunk cap (as failed)."""
    known, counts = _known_documents(db)
    # Sources that vanished from a walked directory lose their chunks; failed files keep theirs.
    present = {src for _, src in files}
    for src in sorted(known):
        if src not in present and any(src.startswith(p) for p in prefixes):
            report.chunks_deleted += db.delete_source(src)
            report.deleted.append(src)

    owner: dict[str, str] = {}  # content hash -> the source that stores it
    for src, digests in known.items():
        if src not in report.deleted and Path(src).exists():
            for digest in digests:
                owner.setdefault(digest, src)
    chunks: list[LCDocument] = []
    for doc in _load_all(files, settings, report):
        digest = doc.digest
        first = owner.setdefault(digest, doc.source)
        if first != doc.source:  # the same content under another name is stored once
            report.duplicates[doc.source] = first
            report.chunks_deleted += db.delete_source(doc.source)
            continue
        state = known.get(doc.source)
        pieces = None
        if state == {digest} and doc.source not in damaged:
            # A document of more chunks than one write holds is written in several: a run stopped between them
            # leaves it short, with nothing else amiss. Only such a document needs chunking again to tell.
            stored = counts[doc.source]
            if stored < db.max_batch or len(pieces := _to_documents(doc, digest, settings)) == stored:
                report.skipped.append(doc.source)  # unchanged and complete: nothing to do
                continue
            log.warning(
                "%s holds %d of its %d chunks (an interrupted run); writing it again", doc.source, stored, len(pieces)
            )
        pieces = pieces or _to_documents(doc, digest, settings)
        if _over_cap(pieces, doc.source, settings, report):
            del owner[digest]  # a copy of it elsewhere fails the same way, not as its duplicate
            continue
        (report.added if state is None else report.updated).append(doc.source)
        chunks.extend(pieces)
    return chunks


def _over_cap(pieces: list[LCDocument], source: str, settings: Settings, report: IngestReport) -> bool:
    """Whether a file makes more chunks than one file may (`max_file_chunks`); if so it is failed in the report."""
    if len(pieces) <= settings.max_file_chunks:
        return False
    report.failed[source] = (
        f"makes {len(pieces)} chunks at RAG_CHUNK_SIZE={settings.chunk_size}, "
        f"over the limit of {settings.max_file_chunks} per file (RAG_MAX_FILE_CHUNKS); "
        "split the file or raise the limit"
    )
    log.debug("skipped %s: %s", source, report.failed[source])  # the report says it (the CLI, the Corpus tab)
    return True


def _embed_ahead(
    catalog: Catalog, embedder: Remembered, paths: list[Path] | None, rebuild: bool, report: IngestReport
) -> None:
    """While another writer holds the index: embed the chunks of the files that are new or changed as the index
    stands now (read only; the plan is made again under the lock, and whatever changed meanwhile is embedded then)."""
    settings = catalog.settings
    try:
        manifest = None if rebuild else catalog.manifest()
        known = _known_documents(catalog.open(embedder.inner))[0] if manifest is not None else {}
    except RagError as exc:  # e.g. built with other settings: the write under the lock says so
        log.info("not embedding ahead: %s", exc)
        return
    files, _ = discover(paths or [settings.corpus_dir], IngestReport())
    texts = []
    for doc in _load_all(files, settings, IngestReport()):
        digest = doc.digest
        if known.get(doc.source) != {digest}:
            pieces = _to_documents(doc, digest, settings)
            if len(pieces) <= settings.max_file_chunks:  # a file over the cap will fail: nothing to embed for it
                texts.extend(c.page_content for c in pieces)
    log.info("another writer holds the index; embedding %d chunks meanwhile", len(texts))
    report.embedded_ahead = embedder.remember(texts)
    log.info(
        "embedded %d chunks ahead; waiting for the index (at most RAG_LOCK_TIMEOUT_S=%g s)",
        report.embedded_ahead,
        settings.lock_timeout_s,
    )


def _load_all(files: list[tuple[Path, str]], settings: Settings, report: IngestReport) -> list[load.Document]:
    docs = []
    for path, src in files:
        try:
            size = path.stat().st_size
            if size > settings.max_file_mb * 1024 * 1024:
                raise LoadError(
                    f"{size / 1048576:.1f} MB is over the {settings.max_file_mb:g} MB limit (RAG_MAX_FILE_MB)"
                )
            docs.append(load.load(path, source=src, timeout=settings.parse_timeout_s))
        except LoadError as exc:
            report.failed[src] = str(exc)
            log.warning("skipped %s: %s", src, exc)
    return docs


def _write(
    db: Store, chunks: list[LCDocument], embedder: Embeddings, batch_size: int, progress: bool, report: IngestReport
) -> None:
    """Embed and store the chunks with LangChain's incremental `index()`, which also removes a rewritten source's
    old chunks. Its cleanup deletes a source's records written before the call started (not before the batch), so
    a document must never span two calls: each call gets whole documents only. Within a call, writes are at most
    the store's largest batch: a document with more chunks is written in several batches of one call."""
    from langchain_classic.indexes import index

    before = getattr(embedder, "texts_embedded", 0)
    bar = _progress(len(chunks), progress)
    limit = db.max_batch
    for group in _whole_documents(chunks, min(batch_size, limit), limit):
        result = index(
            group,
            db.records,
            db.vectorstore,
            cleanup="incremental",
            source_id_key="source",
            key_encoder="sha256",
            batch_size=min(len(group), limit),
        )
        report.chunks_added += result["num_added"] + result["num_updated"]
        report.chunks_deleted += result["num_deleted"]
        bar.update(len(group))
    bar.close()
    report.texts_embedded = getattr(embedder, "texts_embedded", 0) - before
    report.chunks_total = db.count()


def _known_documents(db: Store) -> tuple[dict[str, set[str]], Counter[str]]:
    """source -> content hashes the index holds for it now (two after an interrupted edit; empty if unknown), and
    source -> how many chunks it holds."""
    known: dict[str, set[str]] = {}
    counts: Counter[str] = Counter()
    for doc in db.get(with_text=False):
        src = doc.metadata.get("source", "")
        known.setdefault(src, set()).add(doc.metadata.get("doc_hash", ""))
        counts[src] += 1
    for src in db.sources():  # recorded but with no chunk left (e.g. a crash mid-write): treat as changed
        known.setdefault(src, set())
    known.pop("", None)
    return known, counts


def _to_documents(doc: load.Document, digest: str, settings: Settings) -> list[LCDocument]:
    base = {"source": doc.source, "title": doc.title, "doc_hash": digest, "format": doc.format}
    if doc.meta.get("source_url"):
        base["source_url"] = doc.meta["source_url"]
    return [
        LCDocument(
            page_content=c.text,
            metadata={
                **base,
                "position": c.position,
                "start": c.start,
                "end": c.end,
                "tokens": c.tokens,
                **_pages(doc, c),
            },
        )
        for c in chunk.split(doc.text, settings.chunk_size, settings.chunk_overlap, settings.tokenizer)
    ]


def _pages(doc: load.Document, c: chunk.Chunk) -> dict:
    """For a paged document (PDF): the page the chunk starts on and where later pages start inside it, so a quote's
    page is known from its offset (`Passage.page_at`)."""
    if not doc.pages:
        return {}
    breaks = [s for s in doc.pages if c.start < s < c.end]
    return {"page": doc.page_at(c.start)} | ({"page_breaks": ",".join(map(str, breaks))} if breaks else {})


def _whole_documents(chunks: list[LCDocument], size: int, limit: int) -> Iterable[list[LCDocument]]:
    """Consecutive groups of about `size` chunks that never split one source's chunks and hold at most `limit`
    unless one source alone has more (then it is a group of its own)."""
    group: list[LCDocument] = []
    for _, run in groupby(chunks, key=lambda c: c.metadata["source"]):
        source_chunks = list(run)
        if group and len(group) + len(source_chunks) > limit:
            yield group
            group = []
        group.extend(source_chunks)
        if len(group) >= size:
            yield group
            group = []
    if group:
        yield group


def _progress(total: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc="indexing", unit="chunk", leave=False, disable=not enabled or not total)


__all__ = ["IngestReport", "discover", "ingest", "preview", "source_id"]
