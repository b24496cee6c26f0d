"""The index's lifecycle, in one place: the manifest (which collection is live and the settings it was built with),
a rebuild in progress and the switch to it, the saved lexical index, and the locks that keep writers apart
(all kept by a ledger: files beside an embedded index, or the shared database; rag/ledger.py).

Opening an index built with other settings fails and names the command that rebuilds it. A rebuild writes a new
collection beside the live one and switches only when it is complete; one that died half-way is removed next time.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from langchain_core.embeddings import Embeddings

from rag.config import Settings
from rag.errors import IndexBusyError, IndexMismatchError
from rag.ledger import Ledger, ledger_for
from rag.lexical import LexicalIndex
from rag.store import Store

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
_SERVE_LOCK = ".serve.lock"
_BUILD_KEYS = ("schema_version", "embed_backend", "embed_model", "chunk_size", "chunk_overlap", "tokenizer")


def build_settings(settings: Settings) -> dict[str, Any]:
    """The settings an index is built with: changing any of them needs a rebuild."""
    return {"schema_version": SCHEMA_VERSION} | {k: getattr(settings, k) for k in _BUILD_KEYS[1:]}


@dataclass
class Build:
    """One ingestion's target: the collection it writes and the manifest that was live when it began."""

    store: Store
    previous: dict[str, Any] | None

    @property
    def switching(self) -> bool:
        """Whether committing this build makes another collection live (a first build or a rebuild)."""
        return self.previous is None or self.previous["collection"] != self.store.name


class Catalog:
    """The index of one `Settings`: read the manifest, open the live collection, begin and commit builds. Its state
    is kept by a ledger: files in the index directory, or the shared database (see rag/ledger.py)."""

    def __init__(self, settings: Settings, ledger: Ledger | None = None) -> None:
        self.settings = settings
        self.dir = settings.index_dir
        self.ledger = ledger or ledger_for(settings)

    # -- reading -------------------------------------------------------------------------------
    def manifest(self) -> dict[str, Any] | None:
        return self.ledger.manifest()

    def check(self, manifest: dict[str, Any]) -> None:
        wanted = build_settings(self.settings)
        diffs = [
            f"{k}: index has {manifest.get(k)!r}, settings say {wanted[k]!r}"
            for k in _BUILD_KEYS
            if manifest.get(k) != wanted[k]
        ]
        if diffs:
            raise IndexMismatchError(
                f"index at {self.ledger.where} was built with other settings ({'; '.join(diffs)}); "
                "run `rag ingest --rebuild` to rebuild it with the current ones"
            )

    def open(self, embedder: Embeddings) -> Store:
        """The live collection, for reading; fails clearly when there is none or it was built otherwise."""
        manifest = self.manifest()
        if manifest is None:
            raise IndexMismatchError(f"no index at {self.ledger.where}; run `rag ingest` first")
        self.check(manifest)
        return Store(self.settings, embedder, manifest["collection"])

    def lexical(self, store: Store) -> LexicalIndex:
        """The saved BM25 index of `store` when it matches the manifest; otherwise one built in memory. The manifest
        is read after the index, so one committed in between (by another process) is not taken for stale."""
        for _ in range(3):
            saved = self.ledger.load_lexical(store.name)
            if saved is None:
                break
            if saved.stamp == (self.manifest() or {}).get("lexical_stamp"):
                return saved
        log.warning("lexical index missing or stale; building it in memory (run `rag ingest` to save it)")
        return _build_lexical(store, stamp=(self.manifest() or {}).get("lexical_stamp"))

    # -- writing -------------------------------------------------------------------------------
    @contextmanager
    def writing(self, in_server: bool = False, while_waiting: Callable[[], None] | None = None) -> Iterator[None]:
        """One writer per index: a second one waits `lock_timeout_s` at most, then fails with a clear message;
        while it waits it runs `while_waiting` first (work it can do ahead of the lock).

        An embedded index that a chat server holds (see `hold_for_serving`) is not written by another process:
        Chroma's embedded store is not safe across processes. `in_server` is the chat server's own re-index.
        """
        with self.ledger.locked(self.settings.lock_timeout_s, while_waiting):
            if not in_server and not self.settings.chroma_url and self._served():
                raise IndexBusyError(
                    f"a chat server is using {self.dir}; stop it, re-index from its Corpus tab (RAG_UI_ADMIN=1), "
                    "or run a Chroma server (RAG_CHROMA_URL) so several processes can share the index"
                )
            yield

    def begin(self, embedder: Embeddings, rebuild: bool) -> Build:
        """Start writing: into the live collection, or into a new one for a first build or a rebuild (marked as
        pending, so a crash before `commit` leaves it to be removed). Call inside `writing()`."""
        previous = self.manifest()
        if previous is not None and not rebuild:
            self.check(previous)
        self._drop_abandoned_build(embedder, previous)
        if previous is None or rebuild:
            name = self._new_collection_name()
            self.ledger.set_pending(name)
        else:
            name = previous["collection"]
        return Build(Store(self.settings, embedder, name), previous)

    def commit(self, build: Build, embedder: Embeddings, changed: bool) -> None:
        """Make the build live: save its lexical index if its chunks changed, write the manifest, drop what it
        replaced."""
        previous, name = build.previous, build.store.name
        stamp = None if changed or build.switching else previous.get("lexical_stamp")
        if stamp is None or self.ledger.load_lexical(name) is None:
            lexical = _build_lexical(build.store)
            self.ledger.save_lexical(name, lexical)
            stamp = lexical.stamp
        self.ledger.write_manifest(
            {
                **build_settings(self.settings),
                "collection": name,
                "dimension": _dimension(embedder, None if build.switching else previous),
                "lexical_stamp": stamp,
                "updated_at": datetime.now(UTC).isoformat(timespec="seconds"),
            }
        )
        self.ledger.set_pending(None)
        if previous is not None and build.switching:
            self._drop(embedder, previous["collection"])

    def hold_for_serving(self) -> Any:
        """Mark an embedded index as in use by this process until the returned handle is closed (or the process
        ends)."""
        import fcntl

        self.dir.mkdir(parents=True, exist_ok=True)
        handle = open(self.dir / _SERVE_LOCK, "a+")  # noqa: SIM115 (held for the life of the server)
        fcntl.flock(handle, fcntl.LOCK_SH)
        return handle

    # -- private -------------------------------------------------------------------------------
    def _served(self) -> bool:
        import fcntl

        path = self.dir / _SERVE_LOCK
        if not path.exists():
            return False
        with open(path, "a+") as probe:
            try:
                fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(probe, fcntl.LOCK_UN)
            return False

    def _new_collection_name(self) -> str:
        digest = hashlib.sha256(json.dumps(build_settings(self.settings), sort_keys=True).encode()).hexdigest()[:10]
        return f"{self.settings.collection_prefix}_{digest}_{int(time.time() * 1000):x}"

    def _drop(self, embedder: Embeddings, collection: str) -> None:
        Store(self.settings, embedder, collection).drop()
        self.ledger.drop_lexical(collection)

    def _drop_abandoned_build(self, embedder: Embeddings, manifest: dict[str, Any] | None) -> None:
        """A rebuild that died before its switch left a half-built collection: remove it (the live one is untouched)."""
        pending = self.ledger.pending()
        if pending is None:
            return
        if manifest is None or pending != manifest.get("collection"):
            log.warning("removing %s, left by a rebuild that did not finish", pending)
            self._drop(embedder, pending)
        self.ledger.set_pending(None)


def _build_lexical(store: Store, stamp: str | None = None) -> LexicalIndex:
    """BM25 over every chunk of the collection; `stamp` names the state it stands for (default: a new one)."""
    ids, texts = [], []
    for doc in store.iter_chunks():
        ids.append(doc.id or "")
        texts.append(doc.page_content)
    return LexicalIndex.build(ids, texts, stamp=stamp or uuid.uuid4().hex)


def _dimension(embedder: Embeddings, manifest: dict[str, Any] | None) -> int | None:
    """The vector size, without loading the model when the manifest already knows it."""
    if manifest and manifest.get("dimension"):
        return int(manifest["dimension"])
    dim = getattr(embedder, "dimension", None)
    return int(dim) if dim is not None else None
