"""The vector store (Chroma, embedded or server), its record store, its manifest and its write lock.

Only this module talks to chromadb. The manifest in `index_dir` names the active collection and the
settings it was built with; opening an index built with other settings fails with the command that rebuilds it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from langchain_core.documents import Document as LCDocument
from langchain_core.embeddings import Embeddings

from rag.config import Settings
from rag.errors import ConfigError, IndexBusyError, IndexMismatchError

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
LOCK = ".write.lock"
SERVE_LOCK = ".serve.lock"
_BUILD_KEYS = ("schema_version", "embed_backend", "embed_model", "chunk_size", "chunk_overlap", "tokenizer")


def build_settings(settings: Settings) -> dict[str, Any]:
    """The settings an index is built with: changing any of them needs a rebuild."""
    return {
        "schema_version": SCHEMA_VERSION,
        "embed_backend": settings.embed_backend,
        "embed_model": settings.embed_model,
        "chunk_size": settings.chunk_size,
        "chunk_overlap": settings.chunk_overlap,
        "tokenizer": settings.tokenizer,
    }


def read_manifest(index_dir: Path) -> dict[str, Any] | None:
    path = index_dir / MANIFEST
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        raise IndexMismatchError(f"{path} is unreadable; run `rag ingest --rebuild`") from None


def write_manifest(index_dir: Path, manifest: dict[str, Any]) -> None:
    """Replace the manifest atomically: readers see the old one or the new one, never half of either."""
    index_dir.mkdir(parents=True, exist_ok=True)
    tmp = index_dir / f".{MANIFEST}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True), encoding="utf-8")
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, index_dir / MANIFEST)


def check_manifest(manifest: dict[str, Any], settings: Settings) -> None:
    wanted = build_settings(settings)
    diffs = [f"{k}: index has {manifest.get(k)!r}, settings say {wanted[k]!r}" for k in _BUILD_KEYS if manifest.get(k) != wanted[k]]
    if diffs:
        raise IndexMismatchError(
            f"index at {settings.index_dir} was built with other settings ({'; '.join(diffs)}); "
            "run `rag ingest --rebuild` to rebuild it with the current ones"
        )


class Store:
    """One Chroma collection with its LangChain vector store and SQL record manager."""

    def __init__(self, settings: Settings, embedder: Embeddings, collection: str) -> None:
        from langchain_chroma import Chroma
        from langchain_classic.indexes import SQLRecordManager

        self.settings = settings
        self.collection = collection
        self.client = _client(settings)
        self.vectorstore = Chroma(
            collection_name=collection,
            embedding_function=embedder,
            client=self.client,
            collection_configuration={"hnsw": {"space": "cosine"}},
        )
        self.records = SQLRecordManager(f"chroma/{collection}", db_url=settings.record_url)
        self.records.create_schema()

    # -- reading -------------------------------------------------------------------------------
    def count(self) -> int:
        return self.vectorstore._collection.count()

    def search(self, query_vector: list[float], k: int, where: dict | None = None) -> list[tuple[str, float]]:
        """(chunk id, cosine similarity) of the top-k chunks, best first; texts are fetched with `get` only for the
        chunks that survive fusion (fetching them here for every candidate doubles the cost of a query)."""
        res = self.vectorstore._collection.query(query_embeddings=[query_vector], n_results=k, where=where, include=["distances"])
        return [(i, 1.0 - dist) for i, dist in zip(res["ids"][0], res["distances"][0], strict=True)]

    def get(self, ids: list[str] | None = None, where: dict | None = None, with_text: bool = True) -> list[LCDocument]:
        include = ["metadatas", "documents"] if with_text else ["metadatas"]
        res = self.vectorstore._collection.get(ids=ids, where=where, include=include)
        texts = res.get("documents") or [""] * len(res["ids"])
        return [
            LCDocument(id=i, page_content=t or "", metadata=m or {}) for i, t, m in zip(res["ids"], texts, res["metadatas"], strict=True)
        ]

    def vectors(self, ids: list[str]) -> dict[str, list[float]]:
        """The stored embeddings of those of `ids` the store has."""
        res = self.vectorstore._collection.get(ids=ids, include=["embeddings"])
        return {i: list(v) for i, v in zip(res["ids"], res["embeddings"], strict=True)}

    def iter_chunks(self, batch: int = 5000) -> Iterator[LCDocument]:
        """Every chunk, in pages, for building a lexical index or listing documents."""
        total = self.count()
        for offset in range(0, total, batch):
            res = self.vectorstore._collection.get(limit=batch, offset=offset, include=["metadatas", "documents"])
            for i, t, m in zip(res["ids"], res["documents"], res["metadatas"], strict=True):
                yield LCDocument(id=i, page_content=t or "", metadata=m or {})

    def sources(self) -> set[str]:
        """Every source id the record store knows in this collection."""
        from sqlalchemy import text

        with self.records.engine.connect() as conn:
            rows = conn.execute(
                text("SELECT DISTINCT group_id FROM upsertion_record WHERE namespace = :ns"), {"ns": self.records.namespace}
            )
            return {r[0] for r in rows if r[0] is not None}

    def indexed_at(self) -> dict[str, float]:
        """source -> when its chunks were last written (seconds since the epoch)."""
        from sqlalchemy import text

        with self.records.engine.connect() as conn:
            rows = conn.execute(
                text("SELECT group_id, MAX(updated_at) FROM upsertion_record WHERE namespace = :ns GROUP BY group_id"),
                {"ns": self.records.namespace},
            )
            return {r[0]: float(r[1]) for r in rows if r[0] is not None}

    def ids(self) -> set[str]:
        return set(self.vectorstore._collection.get(include=[])["ids"])

    # -- writing -------------------------------------------------------------------------------
    def delete_source(self, source: str) -> int:
        """Remove one source's chunks from the vector store, then from the record store."""
        keys = self.records.list_keys(group_ids=[source])
        if keys:
            self.vectorstore.delete(ids=keys)
            self.records.delete_keys(keys)
        return len(keys)

    def add_vectors(self, ids: list[str], vectors: list[list[float]], texts: list[str], metadatas: list[dict]) -> None:
        """Write precomputed vectors (benchmarks that measure the store without the embedding model)."""
        self.vectorstore._collection.upsert(ids=ids, embeddings=vectors, documents=texts, metadatas=metadatas)

    def reconcile(self) -> set[str]:
        """Repair what a crash between the two stores leaves: vectors without a record (orphans) are deleted,
        records without a vector are forgotten. Returns the sources touched, whose chunks must be written again."""
        from sqlalchemy import bindparam, text

        vectors, records = self.ids(), set(self.records.list_keys())
        orphans, stale = sorted(vectors - records), sorted(records - vectors)
        touched = {d.metadata.get("source", "") for d in self.get(ids=orphans, with_text=False)} if orphans else set()
        if stale:
            query = text("SELECT DISTINCT group_id FROM upsertion_record WHERE namespace = :ns AND key IN :keys")
            with self.records.engine.connect() as conn:
                rows = conn.execute(query.bindparams(bindparam("keys", expanding=True)), {"ns": self.records.namespace, "keys": stale})
                touched |= {r[0] for r in rows if r[0]}
        if orphans:
            self.vectorstore.delete(ids=orphans)
        if stale:
            self.records.delete_keys(stale)
        if orphans or stale:
            log.warning("repaired the index after an interrupted run: %d orphan chunks removed, %d stale records", len(orphans), len(stale))
        touched.discard("")
        return touched

    def drop(self) -> None:
        """Delete the whole collection and its records."""
        keys = self.records.list_keys()
        if keys:
            self.records.delete_keys(keys)
        try:
            self.client.delete_collection(self.collection)
        except Exception as exc:  # the collection may never have been created
            log.debug("drop %s: %s", self.collection, exc)


def open_store(settings: Settings, embedder: Embeddings) -> Store:
    """Open the active index for reading; fail clearly when there is none or it was built otherwise."""
    manifest = read_manifest(settings.index_dir)
    if manifest is None:
        raise IndexMismatchError(f"no index at {settings.index_dir}; run `rag ingest` first")
    check_manifest(manifest, settings)
    return Store(settings, embedder, manifest["collection"])


def new_collection_name(settings: Settings) -> str:
    digest = hashlib.sha256(json.dumps(build_settings(settings), sort_keys=True).encode()).hexdigest()[:10]
    return f"{settings.collection_prefix}_{digest}_{int(time.time() * 1000):x}"


@contextmanager
def write_lock(settings: Settings, in_server: bool = False) -> Iterator[None]:
    """One writer per index: a second one waits `lock_timeout_s` at most, then fails with a clear message.

    An embedded index that a chat server holds (see `hold_for_serving`) is not written by another process:
    Chroma's embedded store is not safe across processes. `in_server` is the chat server's own re-index.
    """
    from filelock import FileLock, Timeout

    settings.index_dir.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(settings.index_dir / LOCK))
    try:
        lock.acquire(timeout=settings.lock_timeout_s)
    except Timeout:
        raise IndexBusyError(
            f"another process is writing to {settings.index_dir}; wait for it to finish (or set RAG_LOCK_TIMEOUT_S to wait longer)"
        ) from None
    try:
        if not in_server and not settings.chroma_url and _served(settings):
            raise IndexBusyError(
                f"a chat server is using {settings.index_dir}; stop it, re-index from its Corpus tab (RAG_UI_ADMIN=1), "
                "or run a Chroma server (RAG_CHROMA_URL) so several processes can share the index"
            )
        yield
    finally:
        lock.release()


def hold_for_serving(settings: Settings) -> Any:
    """Mark an embedded index as in use by this process until the returned handle is closed (or the process ends)."""
    import fcntl

    settings.index_dir.mkdir(parents=True, exist_ok=True)
    handle = open(settings.index_dir / SERVE_LOCK, "a+")  # noqa: SIM115 (held for the life of the server)
    fcntl.flock(handle, fcntl.LOCK_SH)
    return handle


def _served(settings: Settings) -> bool:
    import fcntl

    path = settings.index_dir / SERVE_LOCK
    if not path.exists():
        return False
    with open(path, "a+") as probe:
        try:
            fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(probe, fcntl.LOCK_UN)
        return False


def _client(settings: Settings) -> Any:
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    chroma_settings = ChromaSettings(anonymized_telemetry=False)
    if settings.chroma_url:
        url = urlparse(settings.chroma_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ConfigError(f"RAG_CHROMA_URL={settings.chroma_url!r} is not an http(s)://host:port address")
        return chromadb.HttpClient(
            host=url.hostname,
            port=url.port or (443 if url.scheme == "https" else 8000),
            ssl=url.scheme == "https",
            settings=chroma_settings,
        )
    settings.index_dir.mkdir(parents=True, exist_ok=True)
    # An absolute path: chromadb caches clients by the path string, so a relative one could reach another directory.
    return chromadb.PersistentClient(path=str((settings.index_dir / "chroma").resolve()), settings=chroma_settings)
