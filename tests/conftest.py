"""Shared fixtures: the real embedding model once per session, and a fresh corpus + index per test."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

import rag
from rag.embed import SentenceTransformerEmbedder

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "corpus"


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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float = 30.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout} s")


@pytest.fixture(scope="session")
def chroma_server(tmp_path_factory):
    """A real `chroma run` on loopback, for server mode."""
    chroma = Path(sys.executable).with_name("chroma")
    port = free_port()
    data = tmp_path_factory.mktemp("chroma-server")
    proc = subprocess.Popen(
        [str(chroma), "run", "--path", str(data), "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, proc=proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(proc)


PG_BIN = Path("/usr/lib/postgresql/15/bin")


@pytest.fixture(scope="session")
def postgres_url():
    """A real PostgreSQL 15 (Debian's) on loopback, in a temporary directory, run as the `postgres` user when the
    tests run as root (PostgreSQL refuses root); its SQLAlchemy URL."""
    import tempfile

    if not (PG_BIN / "initdb").exists():
        pytest.fail("Debian's postgresql is missing: apt-get install postgresql (.ci/run does)")
    as_user = {"user": "postgres", "group": "postgres"} if os.geteuid() == 0 else {}
    root = Path(tempfile.mkdtemp(prefix="rag-postgres-"))  # not under pytest's root-only directory
    try:
        if as_user:
            shutil.chown(root, "postgres", "postgres")
        subprocess.run(
            [str(PG_BIN / "initdb"), "-D", str(root / "data"), "-A", "trust", "-U", "postgres"], check=True, capture_output=True, **as_user
        )
        port = free_port()
        proc = subprocess.Popen(
            [str(PG_BIN / "postgres"), "-D", str(root / "data"), "-p", str(port), "-k", str(root), "-c", "listen_addresses=127.0.0.1"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            **as_user,
        )
        try:
            wait_for_port(port, proc=proc)
            yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
        finally:
            stop(proc)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def stop(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    """End a server process the tests started: terminate, then kill if it lingers."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="session")
def ready_settings(tmp_path_factory, embedder):
    """The real corpus ingested once per session, for tests that only read the index."""
    root = tmp_path_factory.mktemp("ready")
    shutil.copytree(CORPUS, root / "corpus")
    settings = rag.Settings(
        corpus_dir=root / "corpus",
        index_dir=root / "index",
        llm_backend="extractive",
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


def pytest_addoption(parser):
    parser.addoption("--ui-backend", default="local", help="answering backend for the browser chat test (local = the real model)")
