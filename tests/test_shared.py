"""Several processes on one shared index: vectors on a real Chroma server, records, manifest, lexical index and
the writers' lock in a real PostgreSQL (both started by the tests on 127.0.0.1). Replicas follow what an ingest
commits; writers exclude each other on any machine; crashes converge; a service that goes down gives a clear error
and loses nothing."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
import uuid

import numpy as np
import psycopg
import pytest

import rag
from rag.catalog import Catalog
from rag.errors import IndexBusyError, StoreUnavailableError

from .helpers import INGEST_DRIVER, REPORTS, damage_then_repair, reports_corpus
from .servers import Chroma, Postgres, free_port, stop, wait_for_port

pytestmark = [pytest.mark.server, pytest.mark.postgres]
FRESH_S = 5.0  # the bound: a replica answers from a committed change within this
NEW = "# Glacier survey\n\nThe quartzite glacier survey of the Vatnajokull plateau counted eleven moraines.\n"


def _shared(root, chroma, pg, prefix=None, **more) -> rag.Settings:
    """Settings of one process on the shared index: nothing of the index is local (index_dir stays unused)."""
    return rag.Settings(
        corpus_dir=root / "corpus",
        index_dir=root / "local-index",
        chroma_url=chroma,
        record_db_url=pg,
        collection_prefix=prefix or f"t{uuid.uuid4().hex[:10]}",
        llm_backend="extractive",
        **more,
    )


def _env(settings: rag.Settings, **more) -> dict[str, str]:
    return {
        **os.environ,
        "RAG_CHROMA_URL": settings.chroma_url,
        "RAG_RECORD_DB_URL": settings.record_db_url,
        "RAG_COLLECTION_PREFIX": settings.collection_prefix,
        "RAG_LLM_BACKEND": "extractive",
        **more,
    }


def _sql(url: str, query: str, *args) -> list[tuple]:
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as conn:
        return conn.execute(query, args).fetchall()


def _catalog_row(settings: rag.Settings) -> tuple[dict | None, str | None]:
    rows = _sql(
        settings.record_db_url,
        "SELECT manifest, pending FROM rag_catalog WHERE prefix = %s",
        settings.collection_prefix,
    )
    if not rows:
        return None, None
    manifest, pending = rows[0]
    return (json.loads(manifest) if manifest else None), pending


def _records(settings: rag.Settings, collection: str) -> int:
    try:
        return _sql(
            settings.record_db_url, "SELECT COUNT(*) FROM upsertion_record WHERE namespace = %s", f"chroma/{collection}"
        )[0][0]
    except psycopg.errors.UndefinedTable:
        return 0


def _consistent(engine: rag.Engine) -> list[str]:
    """The live collection's chunk ids, after checking each has its record, none is stored twice, and the shared
    lexical index holds exactly them."""
    ids = [d.id for d in engine.store.get(with_text=False)]
    assert len(ids) == len(set(ids))
    assert sorted(ids) == sorted(engine.store.records.list_keys()), (
        "every vector has its record and every record its vector"
    )
    assert sorted(engine.catalog.lexical(engine.store).ids) == sorted(ids)
    return sorted(ids)


def _reference(root, chroma, pg, embedder, paths=None) -> set[str]:
    """The chunk ids one clean ingest of `root`'s corpus stores (in a collection prefix of its own)."""
    engine = rag.Engine(_shared(root, chroma, pg), embedder=embedder)
    report = engine.ingest(paths)
    assert report.ok and report.chunks_total > 0
    return set(_consistent(engine))


# -- one truth for every process ------------------------------------------------------------------------------
def test_a_shared_index_keeps_nothing_on_the_machine_and_any_process_reads_it(
    workdir, embedder, chroma_server, postgres_url
):
    settings = _shared(workdir, chroma_server, postgres_url)
    report = rag.Engine(settings, embedder=embedder).ingest()
    assert report.ok and report.chunks_total > 10
    assert not (workdir / "local-index").exists(), "no manifest, lock, records or lexical files on this machine"
    manifest, pending = _catalog_row(settings)
    assert manifest["collection"] == report.collection and pending is None
    stamps = _sql(postgres_url, "SELECT stamp FROM rag_lexical WHERE collection = %s", report.collection)
    assert stamps == [(manifest["lexical_stamp"],)]

    elsewhere = rag.Engine(settings.model_copy(update={"index_dir": workdir / "another-machine"}), embedder=embedder)
    assert elsewhere.store.name == report.collection and elsewhere.lexical.stamp == manifest["lexical_stamp"]
    hits = elsewhere.search("How long is Finland's border with Russia?", k=3, mode="lexical")
    assert hits and "finland" in hits[0].text.lower()
    # Another index in the same database (another prefix) is apart from this one.
    other = rag.Engine(_shared(workdir, chroma_server, postgres_url), embedder=embedder)
    assert not other.has_index()
    with pytest.raises(rag.RagError, match="no index at PostgreSQL 127.0.0.1"):
        other.search("Finland")


def test_writers_on_any_machine_exclude_each_other(workdir, embedder, chroma_server, postgres_url):
    settings = _shared(workdir, chroma_server, postgres_url)
    rag.Engine(settings, embedder=embedder).ingest()
    (workdir / "corpus" / "glacier.md").write_text(NEW)
    held = Catalog(settings).writing()
    held.__enter__()  # this process holds the index's lock, as a running ingest on another machine would
    try:
        run = subprocess.run(
            [sys.executable, "-m", "rag", "ingest"], cwd=workdir, env=_env(settings), capture_output=True, text=True
        )
        assert run.returncode == IndexBusyError.exit_code, run.stderr
        assert "another process is writing to the index in PostgreSQL" in run.stderr and "Traceback" not in run.stderr
        waiting = subprocess.Popen(
            [sys.executable, "-m", "rag", "ingest"],
            cwd=workdir,
            env=_env(settings, RAG_LOCK_TIMEOUT_S="120"),
            stdout=subprocess.PIPE,
            text=True,
        )
        time.sleep(8)
        assert waiting.poll() is None, "a writer with a timeout waits for the lock"
        assert _catalog_row(settings)[0]["collection"] and "glacier" not in str(
            rag.Engine(settings, embedder=embedder).admin.documents()
        )
    finally:
        held.__exit__(None, None, None)
    assert waiting.wait(120) == 0
    assert "1 added" in waiting.stdout.read()


# -- replicas follow what is committed ---------------------------------------------------------------------------
def _until(found, limit: float) -> float:
    """Seconds until `found()` holds, polling; fails past `limit`."""
    started = time.monotonic()
    while not found():
        assert time.monotonic() - started < limit, f"not within {limit} s"
        time.sleep(0.05)
    return time.monotonic() - started


def test_a_replica_answers_from_a_new_document_and_drops_a_deleted_one_within_5_s(
    workdir, embedder, chroma_server, postgres_url
):
    settings = _shared(workdir, chroma_server, postgres_url)
    writer = rag.Engine(settings, embedder=embedder)
    writer.ingest()
    replica = rag.Engine(settings.model_copy(update={"index_dir": workdir / "replica"}), embedder=embedder)
    query = "quartzite glacier moraines"
    assert all(h.source != "corpus/glacier.md" for h in replica.search(query, k=3, mode="lexical"))

    (workdir / "corpus" / "glacier.md").write_text(NEW)
    assert writer.ingest().added == ["corpus/glacier.md"]  # committed when this returns
    for mode in ("lexical", "hybrid"):
        delay = _until(
            lambda m=mode: any(h.source == "corpus/glacier.md" for h in replica.search(query, k=3, mode=m)), FRESH_S
        )
        print(f"replica sees the new document ({mode}) {delay:.2f} s after the commit")
    answer = replica.ask("What did the glacier survey count?")
    assert any(c.source == "corpus/glacier.md" for c in answer.citations)

    (workdir / "corpus" / "glacier.md").unlink()
    assert writer.ingest().deleted == ["corpus/glacier.md"]
    for mode in ("lexical", "hybrid", "dense"):
        delay = _until(
            lambda m=mode: all(h.source != "corpus/glacier.md" for h in replica.search(query, k=5, mode=m)), FRESH_S
        )
        print(f"replica drops the deleted document ({mode}) {delay:.2f} s after the commit")
    assert all(c.source != "corpus/glacier.md" for c in replica.ask("What did the glacier survey count?").citations)


def test_a_replica_keeps_answering_through_a_rebuild_elsewhere(workdir, embedder, chroma_server, postgres_url):
    settings = _shared(workdir, chroma_server, postgres_url)
    rag.Engine(settings, embedder=embedder).ingest()
    replica = rag.Engine(settings, embedder=embedder)
    old = replica.store.name
    rebuild = subprocess.Popen(
        [sys.executable, "-m", "rag", "ingest", "--rebuild"],
        cwd=workdir,
        env=_env(settings),
        stdout=subprocess.PIPE,
        text=True,
    )
    searches = 0
    while rebuild.poll() is None:  # a new collection is written, switched to, and the old one dropped meanwhile
        assert replica.search("Finland border", k=2), "every search during the rebuild finds chunks"
        assert replica.ask("How long is Finland's border with Russia?").citations, "and every answer cites"
        searches += 1
    assert rebuild.returncode == 0 and searches > 5
    new = _catalog_row(settings)[0]["collection"]
    assert new != old
    _until(lambda: bool(replica.search("Finland border", k=2)) and replica.store.name == new, FRESH_S)


def _post(url: str, body: dict) -> dict:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.loads(response.read())


@pytest.mark.slow
def test_two_serve_replicas_and_an_ingest_at_once(workdir, embedder, chroma_server, postgres_url):
    settings = _shared(workdir, chroma_server, postgres_url)
    rag.Engine(settings, embedder=embedder).ingest()
    ports = [free_port(), free_port()]
    replicas = [
        subprocess.Popen(
            [sys.executable, "-m", "rag", "serve", "--port", str(port)],
            cwd=workdir,
            env=_env(settings, RAG_INDEX_DIR=f"replica{n}"),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n, port in enumerate(ports)
    ]
    try:
        for port, proc in zip(ports, replicas, strict=True):
            wait_for_port(port, timeout=180, proc=proc)
        new = [f"corpus/survey{i}.md" for i in range(6)]
        for i, src in enumerate(new):
            (workdir / src).write_text(
                NEW.replace("eleven", f"{i + 11} surveyed") + f"\nSurvey {i} was filed in volume {i}.\n"
            )
        ingest = subprocess.Popen(
            [sys.executable, "-m", "rag", "ingest"], cwd=workdir, env=_env(settings), stdout=subprocess.PIPE, text=True
        )
        searches = 0
        while ingest.poll() is None:  # the replicas keep answering while the ingest writes
            for port in ports:
                assert _post(f"http://127.0.0.1:{port}/v1/search", {"query": "Finland border", "k": 2})["hits"]
                searches += 1
        assert ingest.wait() == 0 and "6 added" in ingest.stdout.read() and searches > 0
        question = {
            "model": "rag",
            "messages": [{"role": "user", "content": "What did the quartzite glacier survey count?"}],
        }

        def cited() -> list[list[str]]:
            answers = [_post(f"http://127.0.0.1:{port}/v1/chat/completions", question)["rag"] for port in ports]
            return [sorted(c["chunk_id"] for c in a["citations"]) for a in answers]

        def both_see_it() -> bool:
            hits = [
                _post(
                    f"http://127.0.0.1:{p}/v1/search", {"query": "quartzite glacier survey", "k": 6, "mode": "lexical"}
                )["hits"]
                for p in ports
            ]
            return all({h["source"] for h in found} == set(new) for found in hits)

        print(f"both replicas see the new documents {_until(both_see_it, FRESH_S):.2f} s after the ingest ended")
        first, second = cited()
        assert first and first == second, "both replicas cite the same chunks"
        engine = rag.Engine(settings, embedder=embedder)
        ids = _consistent(engine)  # no chunk stored twice, records and lexical agree
        assert {h.source for h in engine.docs.chunks()} >= set(new) and set(first) <= set(ids)
    finally:
        for proc in replicas:
            stop(proc)
    for proc in replicas:
        assert "Traceback" not in proc.stderr.read()


def test_two_ingest_workers_on_disjoint_parts_store_what_one_worker_would(
    tmp_path, embedder, chroma_server, postgres_url, monkeypatch
):
    """Both start while the index is held (as by a third writer): each embeds its part while it waits, then they
    write one after the other; together they store exactly what one worker ingesting the whole corpus stores."""
    monkeypatch.chdir(tmp_path)
    corpus = reports_corpus(tmp_path)
    for i, doc in enumerate(sorted(corpus.glob("*.md"))):
        part = corpus / ("a" if i % 2 else "b")
        part.mkdir(exist_ok=True)
        doc.rename(part / doc.name)
    expected = _reference(tmp_path, chroma_server, postgres_url, embedder)
    settings = _shared(tmp_path, chroma_server, postgres_url)
    held = Catalog(settings).writing()
    held.__enter__()
    try:
        workers = [
            subprocess.Popen(
                [sys.executable, "-m", "rag", "ingest", f"corpus/{part}"],
                cwd=tmp_path,
                env=_env(settings, RAG_LOCK_TIMEOUT_S="300", RAG_INDEX_BATCH_SIZE="8"),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for part in ("a", "b")
        ]
        for w in workers:  # each says when its part is embedded and it only waits for the lock
            for line in w.stderr:
                if "chunks ahead; waiting for the index" in line:
                    break
            else:
                pytest.fail(f"a worker ended without waiting: {w.wait()}")
    finally:
        held.__exit__(None, None, None)
    outcomes = [(w.wait(300), w.stdout.read(), w.stderr.read()) for w in workers]
    assert [code for code, _, _ in outcomes] == [0, 0], outcomes
    for _, out, _ in outcomes:
        added = re.search(
            r"(\d+) added, .*\((\d+) chunks embedded, .*; (\d+) embedded while waiting for another writer", out
        )
        assert added and int(added[1]) == REPORTS // 2 and int(added[2]) == int(added[3]) > 0, out
    engine = rag.Engine(settings, embedder=embedder)
    assert set(_consistent(engine)) == expected
    chunks = engine.store.get()
    stored = engine.store.vectors([c.id for c in chunks])
    fresh = embedder.embed_documents([c.page_content for c in chunks])
    cosines = [float(np.dot(stored[c.id], v)) for c, v in zip(chunks, fresh, strict=True)]
    assert min(cosines) > 0.999, "each chunk is stored with its own text's vector, embedded ahead or not"


# -- crashes converge ----------------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("kill", ["between-stores", "anywhere"])
def test_sigkill_mid_ingest_then_rerun_converges_against_the_servers(
    kill, tmp_path, embedder, chroma_server, postgres_url, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    reports_corpus(tmp_path)
    (tmp_path / "corpus" / "doc03.md").rename(tmp_path / "doc03.md")
    expected = _reference(tmp_path, chroma_server, postgres_url, embedder)
    (tmp_path / "doc03.md").rename(tmp_path / "corpus" / "doc03.md")

    settings = _shared(tmp_path, chroma_server, postgres_url)
    if kill == "between-stores":  # the vectors of the second batch are written, its records are not
        run = subprocess.Popen(
            [sys.executable, "-c", INGEST_DRIVER], cwd=tmp_path, env=_env(settings, KILL_AT_UPDATE="2")
        )
    else:  # once the first batch is recorded, a moment later, wherever the writer is
        run = subprocess.Popen([sys.executable, "-c", INGEST_DRIVER], cwd=tmp_path, env=_env(settings))
        deadline = time.monotonic() + 300
        while not ((pending := _catalog_row(settings)[1]) and _records(settings, pending)):
            assert run.poll() is None and time.monotonic() < deadline, "the ingest ended before it wrote anything"
            time.sleep(0.02)
        time.sleep(0.2)
        run.send_signal(signal.SIGKILL)
    assert run.wait(300) == -signal.SIGKILL
    manifest, pending = _catalog_row(settings)
    assert manifest is None and pending, "killed mid-write: the first build is pending, not live"
    assert 0 < _records(settings, pending) < len(expected)
    (tmp_path / "corpus" / "doc03.md").unlink()  # the corpus moves on while the index is broken
    # The killed writer's lock went with its connection: the next writer does not wait for it (timeout 0).
    finish = subprocess.run(
        [sys.executable, "-c", INGEST_DRIVER], cwd=tmp_path, env=_env(settings), capture_output=True, text=True
    )
    assert finish.returncode == 0, finish.stderr
    engine = rag.Engine(settings, embedder=embedder)
    assert set(_consistent(engine)) == expected
    assert _catalog_row(settings)[1] is None


@pytest.mark.slow
def test_a_crash_during_a_shared_rebuild_keeps_serving_the_old_index(
    tmp_path, embedder, chroma_server, postgres_url, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    reports_corpus(tmp_path)
    settings = _shared(tmp_path, chroma_server, postgres_url)
    first = rag.Engine(settings, embedder=embedder)
    total = first.ingest().chunks_total
    before, _ = _catalog_row(settings)
    driver = INGEST_DRIVER.replace('index_dir="index",', 'index_dir="index", chunk_size=120, chunk_overlap=20,')
    driver = driver.replace("engine.ingest()", "engine.ingest(rebuild=True)")
    proc = subprocess.run([sys.executable, "-c", driver], cwd=tmp_path, env=_env(settings, KILL_AT_UPDATE="3"))
    assert proc.returncode == -signal.SIGKILL
    manifest, pending = _catalog_row(settings)
    assert manifest == before and pending and pending != before["collection"], "the switch never happened"

    reopened = rag.Engine(settings, embedder=embedder)
    assert reopened.store.name == before["collection"] and reopened.store.count() == total
    assert reopened.search("clearance near the river", k=3)
    rebuilt = settings.model_copy(update={"chunk_size": 120, "chunk_overlap": 20})
    after = rag.Engine(rebuilt, embedder=embedder)
    report = after.ingest(rebuild=True)
    mine = {
        c.name for c in after.store.client.list_collections() if c.name.startswith(settings.collection_prefix + "_")
    }
    assert mine == {report.collection}, "the half-built and the replaced collections are gone"
    assert _sql(
        postgres_url, "SELECT collection FROM rag_lexical WHERE collection LIKE %s", settings.collection_prefix + "\\_%"
    ) == [(report.collection,)]
    assert _catalog_row(settings)[1] is None


def test_orphans_and_stale_records_are_repaired_against_the_servers(
    tmp_path, embedder, chroma_server, postgres_url, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    reports_corpus(tmp_path)
    engine = rag.Engine(_shared(tmp_path, chroma_server, postgres_url), embedder=embedder)
    report = damage_then_repair(engine)
    assert len(_consistent(engine)) == report.chunks_total


# -- a service goes down -----------------------------------------------------------------------------------------
@pytest.fixture
def own_servers(tmp_path):
    """A Chroma server and a PostgreSQL of this test's own, to stop and start again."""
    chroma, pg = Chroma(tmp_path / "chroma-data").start(), Postgres().start()
    yield chroma, pg
    chroma.stop()
    pg.remove()


def _one_line_error(run: subprocess.CompletedProcess | tuple, code: int, names: str) -> None:
    returncode, stderr = (run.returncode, run.stderr) if isinstance(run, subprocess.CompletedProcess) else run
    assert returncode == code, stderr
    lines = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and names in lines[0] and "try again once it is back" in lines[0], stderr
    assert "Traceback" not in stderr


def test_servers_stopped_mid_question_give_a_clear_error_and_lose_nothing(workdir, embedder, own_servers):
    chroma, pg = own_servers
    settings = _shared(workdir, chroma.url, pg.url, index_refresh_s=0)
    serving = rag.Engine(settings, embedder=embedder)
    serving.ingest()
    question = "How long is Finland's border with Russia?"
    before = [c.chunk_id for c in serving.ask(question).citations]
    assert before

    chroma.stop()
    with pytest.raises(StoreUnavailableError, match=f"the Chroma server at {chroma.url} does not answer"):
        serving.ask(question)
    search = subprocess.run(
        [sys.executable, "-m", "rag", "search", "Finland"],
        cwd=workdir,
        env=_env(settings),
        capture_output=True,
        text=True,
    )
    _one_line_error(search, StoreUnavailableError.exit_code, "Chroma server")
    chroma.start()
    assert [c.chunk_id for c in serving.ask(question).citations] == before, (
        "the same process answers again, from the same chunks"
    )

    pg.stop()
    # What is open keeps answering: the database is needed to see changes, not to search what is loaded.
    assert [c.chunk_id for c in serving.ask(question).citations] == before
    search = subprocess.run(
        [sys.executable, "-m", "rag", "search", "Finland"],
        cwd=workdir,
        env=_env(settings),
        capture_output=True,
        text=True,
    )
    _one_line_error(search, StoreUnavailableError.exit_code, "record database at 127.0.0.1")
    pg.start()
    (workdir / "corpus" / "glacier.md").write_text(NEW)
    rag.Engine(settings, embedder=embedder).ingest()
    assert any(h.source == "corpus/glacier.md" for h in serving.search("quartzite glacier", k=3, mode="lexical")), (
        "following again"
    )
    assert len(_consistent(serving)) == serving.store.count()


@pytest.mark.slow
@pytest.mark.parametrize("down", ["chroma", "postgres"])
def test_servers_stopped_mid_ingest_give_a_clear_error_then_a_rerun_converges(
    down, tmp_path, embedder, own_servers, monkeypatch
):
    chroma, pg = own_servers
    monkeypatch.chdir(tmp_path)
    reports_corpus(tmp_path)
    expected = _reference(tmp_path, chroma.url, pg.url, embedder)
    settings = _shared(tmp_path, chroma.url, pg.url)
    run = subprocess.Popen(
        [sys.executable, "-m", "rag", "ingest"],
        cwd=tmp_path,
        env=_env(settings, RAG_INDEX_BATCH_SIZE="8", RAG_EMBED_BATCH_SIZE="8"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 300
    while not (_catalog_row(settings)[1] and _records(settings, _catalog_row(settings)[1])):
        assert run.poll() is None and time.monotonic() < deadline, "the ingest ended before it wrote anything"
        time.sleep(0.05)
    (chroma if down == "chroma" else pg).stop()
    _, stderr = run.communicate(timeout=300)
    _one_line_error(
        (run.returncode, stderr),
        StoreUnavailableError.exit_code,
        "Chroma server" if down == "chroma" else "record database",
    )
    (chroma if down == "chroma" else pg).start()
    again = subprocess.run(
        [sys.executable, "-m", "rag", "ingest"], cwd=tmp_path, env=_env(settings), capture_output=True, text=True
    )
    assert again.returncode == 0, again.stderr
    assert set(_consistent(rag.Engine(settings, embedder=embedder))) == expected


# -- the measurement that chose the lexical index ------------------------------------------------------------------
def test_the_lexical_stores_measurement_runs_on_a_part_of_the_python_docs(tmp_path, postgres_url):
    from evals import lexical_stores
    from evals.suite import load as load_suite

    pages = ["tutorial/appetite.html", "tutorial/interpreter.html", "library/json.html"]
    for page in pages:
        (tmp_path / "docs" / page).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "docs" / page).write_bytes((lexical_stores.ROOT / page).read_bytes())
    out = tmp_path / "figures.json"
    assert lexical_stores.main(["--db", postgres_url, "--root", str(tmp_path / "docs"), "--out", str(out)]) == 0
    figures = json.loads(out.read_text())
    cases = [
        c for c in load_suite(lexical_stores.SUITE) if c.answerable and any(ev.source in pages for ev in c.evidence)
    ]
    assert figures["pages"] == 3 and figures["questions"] == len(cases) > 0
    for name in ("bm25", "pg_ts_rank", "pg_ts_rank_cd"):
        assert all(0 <= figures[name][m] <= 1 for m in ("hit@1", "hit@4", "hit@20", "mrr"))
        assert (
            figures[name]["hit@1"] <= figures[name]["hit@4"] <= figures[name]["hit@20"] and figures[name]["mean_ms"] > 0
        )
    assert figures["bm25"]["hit@20"] > 0.5, "three pages: the evidence is among the first 20 for most questions"
    assert psycopg.connect(postgres_url.replace("postgresql+psycopg://", "postgresql://")).execute(
        "SELECT to_regclass('lexical_stores_probe')"
    ).fetchone() == (None,), "its table is dropped"
