"""Where an index's state is kept: the manifest (which collection is live, the settings it was built with), the
rebuild in progress, the saved lexical index of each collection, and the lock that keeps writers apart.

`FileLedger` keeps them in files beside an embedded index (one machine). `SqlLedger` keeps them in the shared
PostgreSQL database when the vectors are on a Chroma server and the records in PostgreSQL: then every process on
every machine reads and writes one truth, and a writer's lock is a PostgreSQL advisory lock (released by the
server when the process holding it dies, however it dies). The catalog (rag/catalog.py) decides what to write.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlparse

from rag.config import Settings
from rag.errors import IndexBusyError, IndexMismatchError
from rag.lexical import LexicalIndex

MANIFEST = "manifest.json"
_PENDING = "rebuilding.json"
_LOCK = ".write.lock"
_POLL_S = 0.2


class Ledger(Protocol):
    where: str  # how messages name this index: a directory, or the database and collection prefix

    def manifest(self) -> dict[str, Any] | None: ...
    def write_manifest(self, manifest: dict[str, Any]) -> None: ...
    def pending(self) -> str | None: ...
    def set_pending(self, collection: str | None) -> None: ...
    def load_lexical(self, collection: str) -> LexicalIndex | None: ...
    def save_lexical(self, collection: str, index: LexicalIndex) -> None: ...
    def drop_lexical(self, collection: str) -> None: ...
    def locked(self, timeout_s: float, while_waiting: Callable[[], None] | None = None) -> Any: ...


def shared(settings: Settings) -> bool:
    """Whether the index lives wholly in shared services (a Chroma server and a PostgreSQL record store)."""
    return bool(
        settings.chroma_url
        and settings.record_db_url
        and urlparse(settings.record_db_url).scheme.startswith("postgresql")
    )


def ledger_for(settings: Settings) -> Ledger:
    return (
        SqlLedger(settings.record_db_url or "", settings.collection_prefix)
        if shared(settings)
        else FileLedger(settings.index_dir)
    )


class FileLedger:
    """The state of an embedded index, in files in its directory; the manifest is replaced atomically."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.where = str(directory)

    def manifest(self) -> dict[str, Any] | None:
        path = self.dir / MANIFEST
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            raise IndexMismatchError(f"{path} is unreadable; run `rag ingest --rebuild`") from None

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        """Readers see the old manifest or the new one, never half of either."""
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.dir / f".{MANIFEST}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True), encoding="utf-8")
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, self.dir / MANIFEST)

    def pending(self) -> str | None:
        try:
            return json.loads((self.dir / _PENDING).read_text())["collection"]
        except (OSError, ValueError, KeyError):
            return None

    def set_pending(self, collection: str | None) -> None:
        if collection is None:
            (self.dir / _PENDING).unlink(missing_ok=True)
        else:
            self.dir.mkdir(parents=True, exist_ok=True)
            (self.dir / _PENDING).write_text(json.dumps({"collection": collection}))

    def load_lexical(self, collection: str) -> LexicalIndex | None:
        return LexicalIndex.load(self._lexical_dir(collection))

    def save_lexical(self, collection: str, index: LexicalIndex) -> None:
        index.save(self._lexical_dir(collection))

    def drop_lexical(self, collection: str) -> None:
        shutil.rmtree(self._lexical_dir(collection), ignore_errors=True)

    @contextmanager
    def locked(self, timeout_s: float, while_waiting: Callable[[], None] | None = None) -> Iterator[None]:
        from filelock import FileLock, Timeout

        self.dir.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(self.dir / _LOCK))

        def attempt() -> bool:
            try:
                lock.acquire(timeout=0)
            except Timeout:
                return False
            return True

        _acquire(attempt, timeout_s, while_waiting, f"another process is writing to {self.dir}")
        try:
            yield
        finally:
            lock.release()

    def _lexical_dir(self, collection: str) -> Path:
        return self.dir / "lexical" / collection


class SqlLedger:
    """The state of a shared index, in two tables of the PostgreSQL record database, keyed by the collection prefix
    (several indexes can share one database). The manifest is one row, replaced in one statement."""

    def __init__(self, url: str, prefix: str) -> None:
        from sqlalchemy import Column, LargeBinary, MetaData, Table, Text, create_engine

        self.prefix = prefix
        parsed = urlparse(url)
        self.where = f"PostgreSQL {parsed.hostname}:{parsed.port or 5432}{parsed.path} (collection prefix {prefix!r})"
        self.engine = create_engine(url, pool_pre_ping=True)
        meta = MetaData()
        self.catalog = Table(
            "rag_catalog",
            meta,
            Column("prefix", Text, primary_key=True),
            Column("manifest", Text),
            Column("pending", Text),
        )
        self.lexical = Table(
            "rag_lexical",
            meta,
            Column("collection", Text, primary_key=True),
            Column("stamp", Text),
            Column("data", LargeBinary),
        )
        self._meta = meta
        self._ready = False

    def manifest(self) -> dict[str, Any] | None:
        row = self._row()
        return json.loads(row.manifest) if row is not None and row.manifest else None

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        self._upsert(manifest=json.dumps(manifest, sort_keys=True))

    def pending(self) -> str | None:
        row = self._row()
        return row.pending if row is not None else None

    def set_pending(self, collection: str | None) -> None:
        self._upsert(pending=collection)

    def load_lexical(self, collection: str) -> LexicalIndex | None:
        from sqlalchemy import select

        with self._connect() as conn:
            blob = conn.execute(select(self.lexical.c.data).where(self.lexical.c.collection == collection)).scalar()
        return LexicalIndex.from_bytes(blob) if blob is not None else None

    def save_lexical(self, collection: str, index: LexicalIndex) -> None:
        from sqlalchemy.dialects.postgresql import insert

        row = {"collection": collection, "stamp": index.stamp, "data": index.to_bytes()}
        stmt = insert(self.lexical).values(**row)
        with self._connect() as conn, conn.begin():
            conn.execute(
                stmt.on_conflict_do_update(
                    index_elements=["collection"], set_={"stamp": row["stamp"], "data": row["data"]}
                )
            )

    def drop_lexical(self, collection: str) -> None:
        with self._connect() as conn, conn.begin():
            conn.execute(self.lexical.delete().where(self.lexical.c.collection == collection))

    @contextmanager
    def locked(self, timeout_s: float, while_waiting: Callable[[], None] | None = None) -> Iterator[None]:
        """A session-level advisory lock on a connection held while writing: another writer on any machine waits
        `timeout_s` at most; a writer that dies (even by SIGKILL) loses its connection, and with it the lock."""
        from sqlalchemy import text

        key = int.from_bytes(hashlib.sha256(f"rag-index:{self.prefix}".encode()).digest()[:8], "big", signed=True)
        with self._connect() as conn:

            def attempt() -> bool:
                got = bool(conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar())
                conn.commit()
                return got

            _acquire(attempt, timeout_s, while_waiting, f"another process is writing to the index in {self.where}")
            try:
                yield
            finally:
                try:
                    conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                    conn.commit()
                except Exception:  # the connection is gone, and with it the lock
                    conn.invalidate()

    # -- private -------------------------------------------------------------------------------
    @contextmanager
    def _connect(self) -> Iterator[Any]:
        """A connection, the tables created on first use. A database that does not answer raises SQLAlchemy's
        OperationalError, which the engine turns into a clear StoreUnavailableError (rag.store.unavailable)."""
        with self.engine.connect() as conn:
            if not self._ready:
                self._meta.create_all(conn)
                conn.commit()
                self._ready = True
            yield conn

    def _row(self) -> Any:
        from sqlalchemy import select

        with self._connect() as conn:
            return conn.execute(select(self.catalog).where(self.catalog.c.prefix == self.prefix)).first()

    def _upsert(self, **values: Any) -> None:
        from sqlalchemy.dialects.postgresql import insert

        stmt = insert(self.catalog).values(prefix=self.prefix, **values)
        with self._connect() as conn, conn.begin():
            conn.execute(stmt.on_conflict_do_update(index_elements=["prefix"], set_=values))


def _acquire(
    attempt: Callable[[], bool], timeout_s: float, while_waiting: Callable[[], None] | None, busy: str
) -> None:
    """Take a lock with `attempt` (True = taken): at once, or after `while_waiting` has run (the work a waiting
    writer can do ahead) and at most `timeout_s` more of polling; IndexBusyError saying `busy` otherwise."""
    if attempt():
        return
    fail = IndexBusyError(f"{busy}; wait for it to finish (or set RAG_LOCK_TIMEOUT_S to wait longer)")
    if timeout_s <= 0:
        raise fail
    if while_waiting is not None:
        while_waiting()
    deadline = time.monotonic() + timeout_s
    while not attempt():
        if time.monotonic() >= deadline:
            raise fail
        time.sleep(_POLL_S)
