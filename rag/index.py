"""Ingestion: discover files, load, chunk, and index them incrementally with LangChain's indexing API."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from langchain_core.documents import Document as LCDocument
from langchain_core.embeddings import Embeddings

from rag import chunk, lexical, load, store
from rag.config import Settings
from rag.errors import IndexMismatchError, LoadError

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
    from langchain_classic.indexes import index

    started = time.perf_counter()
    report = IngestReport()
    with store.write_lock(settings, in_server=in_server):
        manifest = store.read_manifest(settings.index_dir)
        if manifest is not None and not rebuild:
            store.check_manifest(manifest, settings)
        _drop_abandoned_build(settings, embedder, manifest)
        target = store.new_collection_name(settings) if rebuild or manifest is None else manifest["collection"]
        if manifest is None or target != manifest["collection"]:
            settings.index_dir.mkdir(parents=True, exist_ok=True)
            _pending(settings).write_text(json.dumps({"collection": target}))  # a crash before the switch leaves this
        db = store.Store(settings, embedder, target)
        report.collection = target
        damaged = db.reconcile()

        files, prefixes = discover(paths or [settings.corpus_dir], report)
        known = _known_documents(db)
        docs: list[load.Document] = []
        for path, src in files:
            try:
                size = path.stat().st_size
                if size > settings.max_file_mb * 1024 * 1024:
                    raise LoadError(f"{size / 1048576:.1f} MB is over the {settings.max_file_mb:g} MB limit (RAG_MAX_FILE_MB)")
                docs.append(load.load(path, source=src, timeout=settings.parse_timeout_s))
            except LoadError as exc:
                report.failed[src] = str(exc)
                log.warning("skipped %s: %s", src, exc)

        # Sources that vanished from a walked directory lose their chunks; failed files keep theirs.
        present = {src for _, src in files}
        for src in sorted(known):
            if src not in present and any(src.startswith(p) for p in prefixes):
                report.chunks_deleted += db.delete_source(src)
                report.deleted.append(src)

        chunks: list[LCDocument] = []
        owner: dict[str, str] = {}  # content hash -> the source that stores it
        for src, digests in known.items():
            if src not in report.deleted and Path(src).exists():
                for digest in digests:
                    owner.setdefault(digest, src)
        for doc in docs:
            digest = hashlib.sha256(doc.text.encode()).hexdigest()
            first = owner.setdefault(digest, doc.source)
            if first != doc.source:  # the same content under another name is stored once
                report.duplicates[doc.source] = first
                report.chunks_deleted += db.delete_source(doc.source)
                continue
            state = known.get(doc.source)
            if state == {digest} and doc.source not in damaged:  # unchanged and complete: nothing to do
                report.skipped.append(doc.source)
                continue
            (report.added if state is None else report.updated).append(doc.source)
            chunks.extend(_to_documents(doc, digest, settings))

        before = getattr(embedder, "texts_embedded", 0)
        # Incremental cleanup deletes a source's records that the current batch did not touch, so a document must
        # never span two batches: each index() call gets whole documents only.
        bar = _progress(len(chunks), progress)
        for group in _whole_documents(chunks, settings.index_batch_size):
            result = index(
                group,
                db.records,
                db.vectorstore,
                cleanup="incremental",
                source_id_key="source",
                key_encoder="sha256",
                batch_size=len(group),
            )
            report.chunks_added += result["num_added"] + result["num_updated"]
            report.chunks_deleted += result["num_deleted"]
            bar.update(len(group))
        bar.close()
        report.texts_embedded = getattr(embedder, "texts_embedded", 0) - before
        report.chunks_total = db.count()
        changed = report.chunks_added or report.chunks_deleted or manifest is None or target != manifest["collection"]
        stamp = (manifest or {}).get("lexical_stamp") if not changed else None
        if stamp is None or lexical.LexicalIndex.load(lexical_dir(settings, target)) is None:
            stamp = build_lexical(db, settings).stamp

        new_manifest = {
            **store.build_settings(settings),
            "collection": target,
            "dimension": _dimension(embedder, manifest if target == (manifest or {}).get("collection") else None),
            "lexical_stamp": stamp,
            "updated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        store.write_manifest(settings.index_dir, new_manifest)
        _pending(settings).unlink(missing_ok=True)
        if manifest is not None and manifest["collection"] != target:
            _drop(settings, embedder, manifest["collection"])
    report.seconds = time.perf_counter() - started
    return report


def _pending(settings: Settings) -> Path:
    return settings.index_dir / "rebuilding.json"


def _drop(settings: Settings, embedder: Embeddings, collection: str) -> None:
    store.Store(settings, embedder, collection).drop()
    shutil.rmtree(lexical_dir(settings, collection), ignore_errors=True)


def _drop_abandoned_build(settings: Settings, embedder: Embeddings, manifest: dict | None) -> None:
    """A rebuild that died before its switch left a half-built collection: remove it (the active one is untouched)."""
    try:
        pending = json.loads(_pending(settings).read_text())["collection"]
    except (OSError, ValueError, KeyError):
        return
    if manifest is None or pending != manifest.get("collection"):
        log.warning("removing %s, left by a rebuild that did not finish", pending)
        _drop(settings, embedder, pending)
    _pending(settings).unlink(missing_ok=True)


def lexical_dir(settings: Settings, collection: str) -> Path:
    return settings.index_dir / "lexical" / collection


def build_lexical(db: store.Store, settings: Settings, save: bool = True) -> lexical.LexicalIndex:
    """BM25 over every chunk of the collection, saved beside the manifest so queries never rebuild it."""
    ids, texts = [], []
    for doc in db.iter_chunks():
        ids.append(doc.id or "")
        texts.append(doc.page_content)
    index = lexical.LexicalIndex.build(ids, texts, stamp=uuid.uuid4().hex)
    if save:
        index.save(lexical_dir(settings, db.collection))
    return index


def _known_documents(db: store.Store) -> dict[str, set[str]]:
    """source -> content hashes the index holds for it now (two after an interrupted edit; empty if unknown)."""
    known: dict[str, set[str]] = {}
    for doc in db.get(with_text=False):
        known.setdefault(doc.metadata.get("source", ""), set()).add(doc.metadata.get("doc_hash", ""))
    for src in db.sources():  # recorded but with no chunk left (e.g. a crash mid-write): treat as changed
        known.setdefault(src, set())
    known.pop("", None)
    return known


def _to_documents(doc: load.Document, digest: str, settings: Settings) -> list[LCDocument]:
    base = {"source": doc.source, "title": doc.title, "doc_hash": digest, "format": doc.format}
    if doc.meta.get("source_url"):
        base["source_url"] = doc.meta["source_url"]
    return [
        LCDocument(
            page_content=c.text,
            metadata={**base, "position": c.position, "start": c.start, "end": c.end, "tokens": c.tokens},
        )
        for c in chunk.split(doc.text, settings.chunk_size, settings.chunk_overlap, settings.tokenizer)
    ]


def _dimension(embedder: Embeddings, manifest: dict | None) -> int | None:
    """The vector size, without loading the model when the manifest already knows it."""
    if manifest and manifest.get("dimension"):
        return int(manifest["dimension"])
    dim = getattr(embedder, "dimension", None)
    return int(dim) if dim is not None else None


def _whole_documents(chunks: list[LCDocument], size: int) -> Iterable[list[LCDocument]]:
    """Consecutive groups of about `size` chunks that never split one source's chunks."""
    group: list[LCDocument] = []
    for i, doc in enumerate(chunks):
        group.append(doc)
        last_of_source = i + 1 == len(chunks) or chunks[i + 1].metadata["source"] != doc.metadata["source"]
        if last_of_source and len(group) >= size:
            yield group
            group = []
    if group:
        yield group


def _progress(total: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc="indexing", unit="chunk", leave=False, disable=not enabled or not total)


__all__ = ["IngestReport", "IndexMismatchError", "discover", "ingest", "source_id"]
