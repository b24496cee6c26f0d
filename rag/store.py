"""The vector store (Chroma, embedded or server) and its record store: one collection's chunks and what ingestion
wrote into it. Only this module talks to chromadb; which collection is live is the catalog's business
(rag/catalog.py)."""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable, Iterator
from functools import cached_property
from typing import Any, TypeVar
from urllib.parse import urlparse

from langchain_core.documents import Document as LCDocument
from langchain_core.embeddings import Embeddings

from rag.config import Settings
from rag.errors import ConfigError, RagError, StoreUnavailableError

log = logging.getLogger(__name__)

_SPACE = {"hnsw": {"space": "cosine"}}


class Store:
    """One Chroma collection (`collection`, the chromadb handle), the same collection as a LangChain vector store
    (`vectorstore`, for LangChain's incremental `index()`), and the SQL record manager of what was written."""

    def __init__(self, settings: Settings, embedder: Embeddings | None, name: str) -> None:
        self.name = name
        self._settings, self._embedder = settings, embedder
        self.client = _client(settings)
        # Created here when missing, as LangChain's Chroma would; the LangChain wrappers load only for writing.
        self.collection = self.client.get_or_create_collection(name=name, embedding_function=None, configuration=_SPACE)

    @cached_property
    def vectorstore(self) -> Any:
        from langchain_chroma import Chroma

        return Chroma(
            collection_name=self.name,
            embedding_function=self._embedder,
            client=self.client,
            collection_configuration=_SPACE,
        )

    @cached_property
    def records(self) -> Any:
        from langchain_classic.indexes import SQLRecordManager

        records = SQLRecordManager(f"chroma/{self.name}", db_url=self._settings.record_url)
        records.create_schema()
        return records

    @cached_property
    def max_batch(self) -> int:
        """The most chunks one write may carry (Chroma refuses a larger batch; a server may allow another number)."""
        return int(self.client.get_max_batch_size())

    # -- reading -------------------------------------------------------------------------------
    def count(self) -> int:
        return self.collection.count()

    def search(self, query_vector: list[float], k: int, where: dict | None = None) -> list[tuple[str, float]]:
        """(chunk id, cosine similarity) of the top-k chunks, best first; texts are fetched with `get` only for the
        chunks that survive fusion (fetching them here for every candidate doubles the cost of a query)."""
        res = self.collection.query(query_embeddings=[query_vector], n_results=k, where=where, include=["distances"])
        return [(i, 1.0 - dist) for i, dist in zip(res["ids"][0], res["distances"][0], strict=True)]

    def get(self, ids: list[str] | None = None, where: dict | None = None, with_text: bool = True) -> list[LCDocument]:
        include = ["metadatas", "documents"] if with_text else ["metadatas"]
        res = self.collection.get(ids=ids, where=where, include=include)
        texts = res.get("documents") or [""] * len(res["ids"])
        return [
            LCDocument(id=i, page_content=t or "", metadata=m or {})
            for i, t, m in zip(res["ids"], texts, res["metadatas"], strict=True)
        ]

    def vectors(self, ids: list[str]) -> dict[str, list[float]]:
        """The stored embeddings of those of `ids` the store has."""
        res = self.collection.get(ids=ids, include=["embeddings"])
        return {i: list(v) for i, v in zip(res["ids"], res["embeddings"], strict=True)}

    def iter_chunks(self, batch: int = 5000) -> Iterator[LCDocument]:
        """Every chunk, in pages, for building a lexical index or listing documents."""
        total = self.count()
        for offset in range(0, total, batch):
            res = self.collection.get(limit=batch, offset=offset, include=["metadatas", "documents"])
            for i, t, m in zip(res["ids"], res["documents"], res["metadatas"], strict=True):
                yield LCDocument(id=i, page_content=t or "", metadata=m or {})

    def sources(self) -> set[str]:
        """Every source id the record store knows in this collection."""
        from sqlalchemy import text

        with self.records.engine.connect() as conn:
            rows = conn.execute(
                text("SELECT DISTINCT group_id FROM upsertion_record WHERE namespace = :ns"),
                {"ns": self.records.namespace},
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
        return set(self.collection.get(include=[])["ids"])

    # -- writing -------------------------------------------------------------------------------
    def delete_source(self, source: str) -> int:
        """Remove one source's chunks from the vector store, then from the record store."""
        keys = self.records.list_keys(group_ids=[source])
        if keys:
            self.vectorstore.delete(ids=keys)
            self.records.delete_keys(keys)
        return len(keys)

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
                rows = conn.execute(
                    query.bindparams(bindparam("keys", expanding=True)), {"ns": self.records.namespace, "keys": stale}
                )
                touched |= {r[0] for r in rows if r[0]}
        if orphans:
            self.vectorstore.delete(ids=orphans)
        if stale:
            self.records.delete_keys(stale)
        if orphans or stale:
            log.warning(
                "repaired the index after an interrupted run: %d orphan chunks removed, %d stale records",
                len(orphans),
                len(stale),
            )
        touched.discard("")
        return touched

    def drop(self) -> None:
        """Delete the whole collection and its records."""
        keys = self.records.list_keys()
        if keys:
            self.records.delete_keys(keys)
        try:
            self.client.delete_collection(self.name)
        except Exception as exc:  # the collection may never have been created
            log.debug("drop %s: %s", self.name, exc)


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


F = TypeVar("F", bound=Callable[..., Any])


def reaching_services(method: F) -> F:
    """Turn "the Chroma server / the record database does not answer" inside an `Engine` method (a generator too)
    into one StoreUnavailableError that names the service and what to do; other errors pass unchanged."""

    def clear(self: Any, exc: Exception) -> Exception | None:
        return None if isinstance(exc, RagError) else unavailable(exc, self.settings)

    if inspect.isgeneratorfunction(method):

        @functools.wraps(method)
        def stream(self: Any, *args: Any, **kwargs: Any) -> Any:
            try:
                return (yield from method(self, *args, **kwargs))
            except Exception as exc:
                if (error := clear(self, exc)) is None:
                    raise
                raise error from None

        return stream  # type: ignore[return-value]

    @functools.wraps(method)
    def call(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except Exception as exc:
            if (error := clear(self, exc)) is None:
                raise
            raise error from None

    return call  # type: ignore[return-value]


def unavailable(exc: BaseException, settings: Settings) -> StoreUnavailableError | None:
    """The clear error for `exc` when it says a service of the index cannot be reached; None otherwise."""
    import httpx
    from sqlalchemy.exc import InterfaceError, OperationalError

    then = "nothing is lost: try again once it is back (an ingestion resumes where it stopped)"
    if settings.chroma_url and (
        isinstance(exc, httpx.TransportError)
        or isinstance(exc, ValueError)
        and "Could not connect to a Chroma server" in str(exc)
    ):
        return StoreUnavailableError(
            f"the Chroma server at {settings.chroma_url} does not answer ({_reason(exc)}); "
            f"start it or check RAG_CHROMA_URL; {then}"
        )
    if isinstance(exc, OperationalError | InterfaceError):
        where = urlparse(settings.record_url)
        name = f"{where.hostname}:{where.port or 5432}" if where.hostname else settings.record_url
        return StoreUnavailableError(
            f"the record database at {name} does not answer ({_reason(exc)}); "
            f"start it or check RAG_RECORD_DB_URL; {then}"
        )
    return None


def collection_gone(exc: BaseException) -> bool:
    """Whether `exc` is Chroma saying the collection asked for no longer exists."""
    from chromadb.errors import NotFoundError

    return isinstance(exc, NotFoundError)


def _reason(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
