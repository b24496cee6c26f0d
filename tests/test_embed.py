"""The ONNX Runtime copy of the embedding model agrees with PyTorch, is cached and checked, lets a serving process
run without PyTorch, and falls back to PyTorch safely."""

import json
import logging
import os
import subprocess
import sys

import numpy as np
import pytest

from rag.embed import SentenceTransformerEmbedder

QUERIES = ["When was the Ottawa Convention signed?", "mines", "Wie viele Staaten sind beigetreten?", "word " * 400]


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    return tmp_path / "rag" / "onnx"


@pytest.fixture(scope="module")
def reference():
    """PyTorch's vectors for QUERIES."""
    return np.array(SentenceTransformerEmbedder("all-MiniLM-L6-v2", query_backend="torch").embed_documents(QUERIES))


def test_onnx_vectors_match_pytorch_and_the_checked_copy_is_reused_without_pytorch(cache, reference):
    fast = SentenceTransformerEmbedder("all-MiniLM-L6-v2")
    one_by_one = np.array([fast.embed_query(q) for q in QUERIES])
    as_a_set = np.array(fast.embed_documents(QUERIES))  # mixed lengths: sorted and padded inside
    assert fast._onnx is not None, "the packaged model is transformer + mean pooling: ONNX must stand in"
    for got in (one_by_one, as_a_set):
        assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
        assert (got * reference).sum(axis=1).min() > 0.9999
    files = sorted(cache.iterdir())
    assert [f.name.split(".", 1)[1] for f in files] == ["json", "onnx", "tokenizer.json"]
    stamps = [f.stat().st_mtime_ns for f in files]
    again = SentenceTransformerEmbedder("all-MiniLM-L6-v2")
    assert np.allclose(again.embed_query(QUERIES[0]), one_by_one[0], atol=1e-6)
    assert again._onnx is not None and again._model is None, "a checked copy in the cache must not need PyTorch"
    assert sorted(cache.iterdir()) == files and [f.stat().st_mtime_ns for f in files] == stamps


def test_a_serving_process_never_imports_pytorch(cache):
    SentenceTransformerEmbedder("all-MiniLM-L6-v2").embed_query("export once")
    code = (
        "import sys, json; from rag.embed import SentenceTransformerEmbedder\n"
        "e = SentenceTransformerEmbedder('all-MiniLM-L6-v2')\n"
        "e.embed_query('When was it signed?'); e.embed_documents(['One sentence.', 'Another one.'] * 20)\n"
        "print(json.dumps(sorted(m for m in ('torch', 'sentence_transformers', 'transformers') if m in sys.modules)))"
    )
    run = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=dict(os.environ), timeout=300
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert json.loads(run.stdout.strip().splitlines()[-1]) == []


@pytest.mark.heavy
def test_large_sets_go_to_pytorch(cache, reference):
    SentenceTransformerEmbedder("all-MiniLM-L6-v2").embed_query("export once")
    emb = SentenceTransformerEmbedder("all-MiniLM-L6-v2")
    many = QUERIES * (emb.ONNX_MAX_TEXTS // len(QUERIES) + 1)
    got = np.array(emb.embed_documents(many))
    assert emb._model is not None, "ingestion-sized sets run on PyTorch even when a checked ONNX copy is cached"
    assert emb.texts_embedded == len(many)
    assert (got[: len(QUERIES)] * reference).sum(axis=1).min() > 0.99999


@pytest.mark.heavy
def test_a_damaged_cached_copy_is_made_again(cache, reference, caplog):
    SentenceTransformerEmbedder("all-MiniLM-L6-v2").embed_query("export once")
    (meta,) = cache.glob("*[0-9a-f].json")
    saved = json.loads(meta.read_text())
    meta.write_text(json.dumps({**saved, "probe": [-x for x in saved["probe"]]}))  # as if the copy had changed
    with caplog.at_level(logging.WARNING, logger="rag.onnx_query"):
        emb = SentenceTransformerEmbedder("all-MiniLM-L6-v2")
        got = np.array(emb.embed_documents(QUERIES))
    assert "re-exporting" in caplog.text and emb._onnx is not None
    assert (got * reference).sum(axis=1).min() > 0.9999
    assert np.allclose(json.loads(meta.read_text())["probe"], saved["probe"], atol=1e-5)


def test_a_failed_export_keeps_pytorch_with_a_warning(cache, monkeypatch, caplog, reference):
    def broken(*args, **kwargs):
        raise RuntimeError("exporter unavailable")

    monkeypatch.setattr("rag.onnx_query._exported", broken)
    with caplog.at_level(logging.WARNING, logger="rag.onnx_query"):
        emb = SentenceTransformerEmbedder("all-MiniLM-L6-v2")
        vector = emb.embed_query(QUERIES[0])
    assert emb._onnx is None and "exporter unavailable" in caplog.text
    assert np.allclose(vector, reference[0], atol=1e-6)
    assert not cache.exists() or not list(cache.glob("*.json")), (
        "a copy that was never checked must not be trusted later"
    )


def test_torch_query_backend_exports_nothing(cache):
    emb = SentenceTransformerEmbedder("all-MiniLM-L6-v2", query_backend="torch")
    assert len(emb.embed_query(QUERIES[0])) == 384
    assert emb._onnx is None and not cache.exists()


def test_remembered_vectors_are_handed_out_by_text_once_and_the_rest_embedded():
    from rag.embed import Remembered

    class Counting:
        texts_embedded = 0

        def embed_documents(self, texts):
            self.texts_embedded += len(texts)
            return [[float(len(t)), 1.0] for t in texts]

        def embed_query(self, text):
            return [0.0, 0.0]

    inner = Counting()
    ahead = Remembered(inner)
    assert ahead.remember(["aa", "bbb", "aa"]) == 2 and inner.texts_embedded == 2
    assert ahead.embed_documents(["bbb", "c", "aa"]) == [[3.0, 1.0], [1.0, 1.0], [2.0, 1.0]]
    assert inner.texts_embedded == 3, "only the text not remembered was embedded"
    assert ahead.embed_documents(["aa"]) == [[2.0, 1.0]] and inner.texts_embedded == 4, (
        "handed out once, then forgotten"
    )
    assert ahead.texts_embedded == 4 and ahead.embed_query("q") == [0.0, 0.0]
