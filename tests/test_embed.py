"""Query embeddings on the ONNX Runtime copy of the model agree with PyTorch, are cached, and fall back safely."""

import logging

import numpy as np
import pytest

from rag.embed import make_embedder

QUERIES = ["When was the Ottawa Convention signed?", "mines", "Wie viele Staaten sind beigetreten?", "word " * 400]


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    return tmp_path / "rag" / "onnx"


def test_onnx_queries_match_pytorch_and_the_export_is_reused(cache):
    fast = make_embedder("sentence-transformers", "all-MiniLM-L6-v2")
    got = np.array([fast.embed_query(q) for q in QUERIES])
    assert fast._query_encoder is not None, "the packaged model is transformer + mean pooling: ONNX must stand in"
    want = np.array(fast.embed_documents(QUERIES))  # documents always go through PyTorch
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    assert (got * want).sum(axis=1).min() > 0.9999
    (exported,) = cache.iterdir()
    stamp = exported.stat().st_mtime_ns
    again = make_embedder("sentence-transformers", "all-MiniLM-L6-v2")
    again.embed_query("x")
    assert again._query_encoder is not None and exported.stat().st_mtime_ns == stamp and list(cache.iterdir()) == [exported]


def test_a_failed_export_keeps_pytorch_with_a_warning(cache, monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise RuntimeError("exporter unavailable")

    monkeypatch.setattr("rag.onnx_query._exported", broken)
    with caplog.at_level(logging.WARNING, logger="rag.onnx_query"):
        emb = make_embedder("sentence-transformers", "all-MiniLM-L6-v2")
        vector = emb.embed_query(QUERIES[0])
    assert emb._query_encoder is None and "exporter unavailable" in caplog.text
    assert np.allclose(vector, emb.embed_documents(QUERIES[:1])[0])


def test_torch_query_backend_exports_nothing(cache):
    emb = make_embedder("sentence-transformers", "all-MiniLM-L6-v2", query_backend="torch")
    assert len(emb.embed_query(QUERIES[0])) == 384
    assert emb._query_encoder is None and not cache.exists()
