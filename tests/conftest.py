"""Shared fixtures: the real embedding model once per session, and a fresh corpus + index per test."""

from __future__ import annotations

import os
import shutil

import pytest

import rag
from rag.embed import SentenceTransformerEmbedder
from tests.fakes import ScriptedChatModel
from tests.helpers import CORPUS, LOGINS
from tests.servers import Chroma, Postgres, free_port, wait_for_port

# The tests of ingestion, serving and the retrieved way run as they were written: a process that serves or ingests
# with the embedded model would otherwise read the whole corpus into it (a minute each). The whole-corpus way's own
# tests ask for it (`answer_mode="auto"`, or RAG_ANSWER_MODE in a child's environment).
os.environ["RAG_ANSWER_MODE"] = "retrieved"


@pytest.fixture(scope="session")
def embedder():
    """The real packaged all-MiniLM-L6-v2, loaded once."""
    return SentenceTransformerEmbedder("all-MiniLM-L6-v2")


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A temp working directory holding a copy of the corpus; source ids are relative to it."""
    shutil.copytree(CORPUS, tmp_path / "corpus")
    monkeypatch.chdir(tmp_path)
    for var in ("RAG_CORPUS_DIR", "RAG_INDEX_DIR", "RAG_CHROMA_URL", "RAG_RECORD_DB_URL", "RAG_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path


@pytest.fixture
def settings(workdir):
    return rag.Settings(corpus_dir=workdir / "corpus", index_dir=workdir / "index")


@pytest.fixture
def engine(settings, embedder):
    return rag.Engine(settings, embedder=embedder)


@pytest.fixture(scope="session")
def chroma_server(tmp_path_factory):
    """A real `chroma run` on loopback, for server mode."""
    server = Chroma(tmp_path_factory.mktemp("chroma-server")).start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="session")
def postgres_url():
    """A real PostgreSQL 15 (Debian's) on loopback, in a temporary directory; its SQLAlchemy URL."""
    server = Postgres()
    try:
        yield server.start().url
    finally:
        server.remove()


@pytest.fixture(scope="session")
def ready_settings(tmp_path_factory, embedder):
    """The real corpus ingested once per session, for tests that only read the index."""
    root = tmp_path_factory.mktemp("ready")
    shutil.copytree(CORPUS, root / "corpus")
    settings = rag.Settings(
        corpus_dir=root / "corpus",
        index_dir=root / "index",
        llm_backend="extractive",
        answer_mode="retrieved",  # the tests of the retrieved way; the whole-corpus way's tests ask for it
        conversations_db_url=f"sqlite:///{root / 'chats.sqlite'}",
    )
    cwd = os.getcwd()
    os.chdir(root)  # source ids read "corpus/…", as in a real checkout
    try:
        report = rag.Engine(settings, embedder=embedder).ingest()
    finally:
        os.chdir(cwd)
    assert report.ok and report.chunks_total > 0
    return settings


@pytest.fixture
def ready_engine(ready_settings, embedder):
    return rag.Engine(ready_settings, embedder=embedder)


@pytest.fixture
def admins_served(workdir, embedder):
    """(engine, url): the corpus copy in `workdir` indexed and served with the two logins, alice the admin."""
    from ui import serve as ui_serve

    settings = rag.Settings(
        corpus_dir=workdir / "corpus",
        index_dir=workdir / "index",
        llm_backend="local",
        conversations_db_url=f"sqlite:///{workdir / 'chats.sqlite'}",
        ui_auth=LOGINS,
        ui_admin=True,
        ui_admins="alice",
    )
    engine = rag.Engine(settings, embedder=embedder, llm=ScriptedChatModel())
    assert engine.ingest().ok
    port = free_port()
    ui_serve.launch(engine, port=port, block=False)
    try:
        yield engine, f"http://127.0.0.1:{port}/"
    finally:
        ui_serve.close_all()


@pytest.fixture
def postgres_served(workdir, embedder):
    """(engine, url, the PostgreSQL): `rag serve` on an index whose records, and whose saved conversations, are in
    a PostgreSQL of this test's own, to stop."""
    from ui import serve as ui_serve

    pg = Postgres().start()
    settings = rag.Settings(
        corpus_dir=workdir / "corpus",
        index_dir=workdir / "index",
        record_db_url=pg.url,
        conversations_db_url=pg.url,
        llm_backend="local",
        index_refresh_s=0,
    )
    engine = rag.Engine(settings, embedder=embedder, llm=ScriptedChatModel())
    assert engine.ingest().ok
    port = free_port()
    ui_serve.launch(engine, port=port, block=False)
    wait_for_port(port)
    try:
        yield engine, f"http://127.0.0.1:{port}", pg
    finally:
        ui_serve.close_all()
        pg.remove()


def pytest_collection_modifyitems(items):
    """A test of a real PostgreSQL is marked `postgres` (the fast tier leaves it out) when it asks for the server."""
    for item in items:
        if "postgres_url" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.postgres)


def pytest_addoption(parser):
    parser.addoption(
        "--ui-backend", default="local", help="answering backend for the browser chat test (local = the real model)"
    )
