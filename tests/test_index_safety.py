"""Crash safety and concurrency of the index: SIGKILL mid-ingest converges; writers are serialised; a served index
is not written by another process."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

import rag
from rag.errors import IndexBusyError

from .helpers import INGEST_DRIVER, REPORTS, damage_then_repair, reports_corpus


def _run(root, env=None, timeout=300):
    return subprocess.Popen(
        [sys.executable, "-c", INGEST_DRIVER],
        cwd=root,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        text=True,
    )


def _records_written(root) -> int:
    """How many chunks the record store of `root`'s index holds, read with plain SQLite (another process may be
    writing the index; Chroma is not opened); 0 before the store exists."""
    import sqlite3

    db = root / "index" / "records.sqlite"
    if not db.exists():
        return 0
    con = sqlite3.connect(db, timeout=30)
    try:
        return con.execute("SELECT COUNT(*) FROM upsertion_record").fetchone()[0]
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):  # not created yet
            return 0
        raise
    finally:
        con.close()


def _state(root, embedder):
    engine = rag.Engine(rag.Settings(corpus_dir=root / "corpus", index_dir=root / "index"), embedder=embedder)
    docs = engine.store.get()
    ids = [d.id for d in docs]
    return engine, sorted(ids), sorted(engine.store.records.list_keys())


@pytest.mark.slow
def test_sigkill_at_any_point_then_rerun_converges_to_a_clean_ingest(tmp_path, embedder, monkeypatch):
    clean = tmp_path / "clean"
    reports_corpus(clean)
    (clean / "corpus" / "doc03.md").unlink()
    monkeypatch.chdir(clean)  # source ids are relative to the working directory, as in the runs below
    reference = rag.Engine(rag.Settings(corpus_dir="corpus", index_dir="index"), embedder=embedder)
    reference.ingest()
    expected = {d.id for d in reference.store.get()}
    assert expected

    for n, kill in enumerate([("update", 2), ("update", 5), ("time", 0.2)]):
        root = tmp_path / f"run{n}"
        reports_corpus(root)
        if kill[0] == "update":
            proc = _run(root, {"KILL_AT_UPDATE": str(kill[1])})
        else:
            # Not at a hooked step: once the first batch is recorded, wait a moment and kill wherever the writer is.
            proc = _run(root)
            deadline = time.monotonic() + 300
            while _records_written(root) == 0:
                assert proc.poll() is None, f"the ingest ended ({proc.returncode}) before it wrote anything"
                assert time.monotonic() < deadline, "the ingest wrote nothing in 300 s"
                time.sleep(0.02)
            time.sleep(kill[1])
            proc.send_signal(signal.SIGKILL)
        assert proc.wait(300) == -signal.SIGKILL, f"run {n} ({kill}) was not killed: it exited with {proc.returncode}"
        # Killed mid-write: the first build is still pending (no manifest), with some of its chunks recorded, not all.
        assert (root / "index" / "rebuilding.json").exists() and not (root / "index" / "manifest.json").exists()
        written = _records_written(root)
        assert 0 < written < len(expected), (
            f"run {n} ({kill}) was killed with {written} of {len(expected)}+ chunks recorded"
        )
        (root / "corpus" / "doc03.md").unlink()  # and the corpus moves on while the index is broken
        finish = _run(root)
        assert finish.wait(300) == 0
        engine, ids, records = _state(root, embedder)
        assert ids == records, "every vector has its record and every record its vector"
        assert len(ids) == len(set(ids))
        sources = {d.metadata["source"] for d in engine.store.get()}
        assert "corpus/doc03.md" not in sources and len(sources) == REPORTS - 1
        assert set(ids) == expected, f"run {n} ({kill}) differs from a clean ingest"


@pytest.mark.heavy
def test_a_served_index_refuses_writers_from_other_processes(tmp_path, embedder, monkeypatch):
    monkeypatch.chdir(tmp_path)
    reports_corpus(tmp_path)
    engine = rag.Engine(rag.Settings(corpus_dir=tmp_path / "corpus", index_dir=tmp_path / "index"), embedder=embedder)
    engine.ingest()
    engine.hold_for_serving()
    try:
        started = time.monotonic()
        run = subprocess.run(
            [sys.executable, "-m", "rag", "ingest"], cwd=tmp_path, capture_output=True, text=True, timeout=120
        )
        assert run.returncode == IndexBusyError.exit_code and "a chat server is using" in run.stderr
        assert time.monotonic() - started < 60, "fails fast, no long busy-wait"
        (tmp_path / "corpus" / "doc00.md").write_text("# New\n\nThe server's own re-index is allowed.\n")
        assert engine.ingest().updated == ["corpus/doc00.md"]
    finally:
        engine.release_serving()
    run = subprocess.run(
        [sys.executable, "-m", "rag", "ingest"], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr


@pytest.mark.heavy
def test_reconcile_repairs_orphans_and_stale_records(tmp_path, embedder, monkeypatch):
    monkeypatch.chdir(tmp_path)
    reports_corpus(tmp_path)
    engine = rag.Engine(rag.Settings(corpus_dir=tmp_path / "corpus", index_dir=tmp_path / "index"), embedder=embedder)
    report = damage_then_repair(engine)
    assert sorted(engine.store.ids()) == sorted(engine.store.records.list_keys())
    assert json.loads((tmp_path / "index" / "manifest.json").read_text())["collection"] == report.collection


@pytest.mark.slow
def test_a_crash_during_rebuild_keeps_serving_the_old_index(tmp_path, embedder, monkeypatch):
    """A rebuild with other chunking writes a new collection; killed before the switch, the old index still serves.
    Writers run in their own processes: an embedded Chroma must not be open in two processes that write."""
    monkeypatch.chdir(tmp_path)
    reports_corpus(tmp_path)
    first = _run(tmp_path)
    assert first.wait(300) == 0
    total = int(re.search(r"(\d+) in index", first.stdout.read()).group(1))
    before = json.loads((tmp_path / "index" / "manifest.json").read_text())
    driver = INGEST_DRIVER.replace('index_dir="index",', 'index_dir="index", chunk_size=120, chunk_overlap=20,')
    driver = driver.replace("engine.ingest()", "engine.ingest(rebuild=True)")
    proc = subprocess.Popen([sys.executable, "-c", driver], cwd=tmp_path, env={**os.environ, "KILL_AT_UPDATE": "3"})
    assert proc.wait(300) == -signal.SIGKILL
    assert json.loads((tmp_path / "index" / "manifest.json").read_text()) == before, "the switch never happened"
    assert (tmp_path / "index" / "rebuilding.json").exists()

    reopened = rag.Engine(rag.Settings(corpus_dir="corpus", index_dir="index"), embedder=embedder)
    assert reopened.store.name == before["collection"] and reopened.store.count() == total
    assert reopened.search("clearance near the river", k=3)
    # The next rebuild removes the half-built collection, switches over, and drops the old one.
    new = rag.Engine(
        rag.Settings(corpus_dir="corpus", index_dir="index", chunk_size=120, chunk_overlap=20), embedder=embedder
    )
    report = new.ingest(rebuild=True)
    assert {c.name for c in new.store.client.list_collections()} == {report.collection}
    assert not (tmp_path / "index" / "rebuilding.json").exists()
