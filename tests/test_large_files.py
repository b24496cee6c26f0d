"""One large file: written in batches the store accepts, or, over the per-file chunk cap, failed in one line before
any embedding while the files beside it are indexed (#29, point 2)."""

import os
import subprocess
import sys

import pytest

import rag
from rag import chunk
from rag.load import load
from rag.store import Store

from .helpers import numbered_lines

SMALL = "# Field notes\n\nClearing one hectare of minefield took the team eleven days.\n"


def _chunks_of(path, settings) -> list[chunk.Chunk]:
    """The file chunked here, independently of ingestion, with the same settings."""
    return chunk.split(load(path).text, settings.chunk_size, settings.chunk_overlap, settings.tokenizer)


def _rag(*args, cwd, **env):
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    clean["RAG_ANSWER_MODE"] = (
        "retrieved"  # `rag ingest` would read the corpus into the model (the whole-corpus tests do)
    )
    return subprocess.run(
        [sys.executable, "-m", "rag", *args], cwd=cwd, env={**clean, **env}, capture_output=True, text=True, timeout=600
    )


@pytest.fixture
def big_corpus(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "big.txt").write_text(numbered_lines(6000))
    (corpus / "notes.md").write_text(SMALL)
    return tmp_path


def _indexed(root, embedder) -> dict[str, int]:
    """source -> chunks stored, read back from the index `rag ingest` built in `root`."""
    settings = rag.Settings(corpus_dir=root / "corpus", index_dir=root / "index", **SMALL_CHUNKS)
    counts: dict[str, int] = {}
    for hit in rag.Engine(settings, embedder=embedder).docs.chunks():
        counts[hit.source] = counts.get(hit.source, 0) + 1
    return counts


SMALL_CHUNKS = {"chunk_size": 16, "chunk_overlap": 4}
ENV = {"RAG_CHUNK_SIZE": "16", "RAG_CHUNK_OVERLAP": "4"}


@pytest.mark.heavy
def test_a_file_over_the_chunk_cap_fails_in_one_line_and_the_file_beside_it_is_indexed(big_corpus, embedder):
    settings = rag.Settings(**SMALL_CHUNKS)
    assert len(_chunks_of(big_corpus / "corpus" / "big.txt", settings)) == 6000
    small = len(_chunks_of(big_corpus / "corpus" / "notes.md", settings))
    run = _rag("ingest", cwd=big_corpus, **ENV)  # the default cap: 5,000 chunks a file
    assert run.returncode == 1, run.stdout + run.stderr
    assert "Traceback" not in run.stderr and "chromadb" not in run.stderr, run.stderr
    assert run.stderr.splitlines() == [
        "failed: corpus/big.txt: makes 6000 chunks at RAG_CHUNK_SIZE=16, "
        "over the limit of 5000 per file (RAG_MAX_FILE_CHUNKS); split the file or raise the limit"
    ], run.stderr
    assert run.stdout.startswith(f"1 added, 0 updated, 0 skipped, 0 deleted, 1 failed ({small} chunks embedded,"), (
        run.stdout
    )
    assert _indexed(big_corpus, embedder) == {"corpus/notes.md": small}


@pytest.mark.slow  # embeds 6,000 chunks (about 90 s here)
def test_a_file_of_more_chunks_than_one_store_write_is_indexed_whole(big_corpus, embedder):
    """6,000 chunks is more than Chroma takes in one write (5,461 here): it used to end in chromadb's traceback with
    nothing indexed."""
    assert Store(rag.Settings(index_dir=big_corpus / "probe"), None, "probe").max_batch < 6000
    run = _rag("ingest", cwd=big_corpus, RAG_MAX_FILE_CHUNKS="6000", **ENV)
    assert run.returncode == 0, run.stderr
    settings = rag.Settings(**SMALL_CHUNKS)
    expected = {src: len(_chunks_of(big_corpus / src, settings)) for src in ("corpus/big.txt", "corpus/notes.md")}
    total = sum(expected.values())
    summary = (
        f"2 added, 0 updated, 0 skipped, 0 deleted, 0 failed ({total} chunks embedded, 0 removed, {total} in index)"
    )
    assert run.stdout.startswith(summary), run.stdout
    assert _indexed(big_corpus, embedder) == expected
    again = _rag("ingest", cwd=big_corpus, RAG_MAX_FILE_CHUNKS="6000", **ENV)
    assert again.returncode == 0 and again.stdout.startswith("0 added, 0 updated, 2 skipped"), (
        again.stdout + again.stderr
    )


# The same logic with the store's limit made small, so the real embedder has few chunks to embed.


@pytest.fixture
def small_writes(workdir, monkeypatch, embedder):
    """An engine over the corpus whose store takes at most 16 chunks a write, and a 40-line file added to it."""
    monkeypatch.setattr(Store, "max_batch", 16)
    settings = rag.Settings(
        corpus_dir=workdir / "corpus", index_dir=workdir / "index", **SMALL_CHUNKS, index_batch_size=8
    )
    engine = rag.Engine(settings, embedder=embedder)
    assert engine.ingest().ok
    (workdir / "corpus" / "lines.txt").write_text(numbered_lines(40))
    return engine


def _stored(engine, source) -> list:
    return sorted((h.start, h.end, h.text) for h in engine.docs.chunks(source))


def _expected(workdir, settings, source) -> list:
    return sorted((c.start, c.end, c.text) for c in _chunks_of(workdir / source, settings))


def test_a_document_larger_than_one_write_is_stored_whole_and_replaced_whole(small_writes, workdir):
    engine, src = small_writes, "corpus/lines.txt"
    report = engine.ingest()
    assert report.added == [src] and report.ok
    assert _stored(engine, src) == _expected(workdir, engine.settings, src) and len(_stored(engine, src)) == 40
    assert sorted(engine.store.ids()) == sorted(engine.store.records.list_keys())

    (workdir / src).write_text(
        numbered_lines(40).replace("Line 0039", "Last line")
    )  # every chunk's id changes (doc_hash)
    report = engine.ingest()
    assert report.updated == [src] and report.chunks_deleted == 40, report.summary()
    assert _stored(engine, src) == _expected(workdir, engine.settings, src), "no chunk of the old version is left"
    assert sorted(engine.store.ids()) == sorted(engine.store.records.list_keys())
    assert engine.ingest().skipped.count(src) == 1


def test_a_run_stopped_between_the_writes_of_one_document_is_completed_by_the_next(small_writes, workdir, monkeypatch):
    from langchain_chroma import Chroma

    engine, src = small_writes, "corpus/lines.txt"
    real, calls = Chroma.add_texts, []

    def stopped_on_the_second_write(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Chroma, "add_texts", stopped_on_the_second_write)
    with pytest.raises(KeyboardInterrupt):
        engine.ingest()
    monkeypatch.setattr(Chroma, "add_texts", real)
    assert len(_stored(engine, src)) == 16, "the first write landed, whole and recorded; nothing else looks amiss"

    report = engine.ingest()
    assert report.updated == [src] and report.ok, report.summary()
    assert _stored(engine, src) == _expected(workdir, engine.settings, src)
    assert sorted(engine.store.ids()) == sorted(engine.store.records.list_keys())
