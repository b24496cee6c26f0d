"""Hybrid retrieval on a real index: fusion, texts read only for the winners, stale lexical entries, MMR."""

from rag.retrieve import rrf


def test_rrf_rewards_agreement_between_rankings():
    fused = rrf([["a", "b", "c"], ["c", "a"]], k=60)
    assert sorted(fused, key=lambda i: -fused[i]) == ["a", "c", "b"]
    assert fused["b"] == 1 / 62


def _ingested(engine, workdir, notes: dict[str, str]):
    for name, text in notes.items():
        (workdir / "corpus" / name).write_text(text)
    engine.ingest()
    return engine


def test_hits_carry_text_scores_and_offsets(engine, workdir):
    _ingested(engine, workdir, {})
    docs = engine.retriever(k=3).invoke("When was the Ottawa Convention signed?")
    assert len(docs) == 3 and len({d.id for d in docs}) == 3
    scores = [d.metadata["score"] for d in docs]
    assert scores == sorted(scores, reverse=True)
    assert any("1997" in d.page_content for d in docs)
    for d in docs:
        assert d.page_content and d.metadata["source"].startswith("corpus/")
        assert d.metadata["end"] - d.metadata["start"] == len(d.page_content)
        assert d.metadata["dense_score"] is not None


def test_a_chunk_gone_from_the_store_is_skipped_and_k_still_filled(engine, workdir):
    """The lexical index can briefly name a chunk the vector store no longer has; the next candidates fill in."""
    notes = {
        "pumps.md": "The quartz pump failed twice.\n",
        "valves.md": "A quartz valve leaked.\n",
        "gears.md": "Quartz gears.\n",
    }
    _ingested(engine, workdir, notes)
    first = engine.retriever(k=3, mode="lexical").invoke("quartz")
    assert len(first) == 3
    engine.store.collection.delete(ids=[first[0].id])
    again = engine.retriever(k=2, mode="lexical").invoke("quartz")
    assert [d.id for d in again] == [d.id for d in first[1:]]


def test_mmr_prefers_a_novel_passage_over_a_near_duplicate(engine, workdir):
    twin = "Mine clearance near the river took eleven months and cost four million euros.\n"
    _ingested(
        engine,
        workdir,
        {
            "a.md": twin,
            "b.md": twin.replace("eleven", "twelve"),
            "c.md": "Clearance teams near the river found unexploded shells in the old quarry.\n",
        },
    )
    query = "mine clearance near the river"
    plain = [d.metadata["source"] for d in engine.retriever(k=2, mode="dense").invoke(query)]
    diverse = [d.metadata["source"] for d in engine.retriever(k=2, mode="dense", mmr=True).invoke(query)]
    assert sorted(plain) == ["corpus/a.md", "corpus/b.md"]
    assert "corpus/c.md" in diverse and len(set(diverse)) == 2


class _HashVectors:
    """Unit vectors drawn from a hash of each text: designed geometry (no structure to exploit), exact answers known."""

    dimension = 24

    def embed_documents(self, texts):
        import hashlib

        import numpy as np

        out = []
        for t in texts:
            v = np.random.default_rng(int.from_bytes(hashlib.sha256(t.encode()).digest()[:8], "little")).normal(
                size=self.dimension
            )
            out.append((v / np.linalg.norm(v)).tolist())
        return out

    def embed_query(self, text):
        return self.embed_documents([text])[0]


def test_dense_top_k_equals_brute_force_cosine(settings):
    """The store's and the retriever's top k are the exact cosine top k over the same stored vectors."""
    import numpy as np
    from langchain_core.embeddings import Embeddings

    import rag
    from rag.store import Store

    embedder = type("HashVectors", (_HashVectors, Embeddings), {})()
    store = Store(settings, embedder, "reference")
    ids = [f"c{i}" for i in range(600)]
    store.vectorstore.add_texts([f"chunk {i}" for i in range(600)], metadatas=[{"source": "s"}] * 600, ids=ids)
    stored = store.vectors(ids)
    matrix = np.array([stored[i] for i in ids])
    engine = rag.Engine(settings, embedder=embedder, store=store)
    for q in (f"query {j}" for j in range(25)):
        exact = [ids[i] for i in np.argsort(-(matrix @ np.array(embedder.embed_query(q))))[:10]]
        assert [i for i, _ in store.search(embedder.embed_query(q), 10)] == exact
        assert [h.chunk_id for h in engine.search(q, k=10, mode="dense")] == exact


class _Watched:
    """The real embedder, noting which thread loads it and whether the index was open by then."""

    def __init__(self, inner, cached: bool, engine_box: list) -> None:
        self.inner, self.cached, self.engine_box, self.calls = inner, cached, engine_box, []

    def query_encoder_cached(self) -> bool:
        return self.cached

    def embed_query(self, text: str):
        import threading

        self.calls.append((threading.current_thread().name, "store" in vars(self.engine_box[0])))
        return self.inner.embed_query(text)

    def embed_documents(self, texts):
        return self.inner.embed_documents(texts)


def test_open_for_search_loads_a_cached_encoder_beside_the_index_and_any_other_first(ready_settings, embedder):
    import rag
    from rag.cli import open_for_search

    for cached, expected in ((True, "query-encoder"), (False, "MainThread")):
        box: list = []
        watched = _Watched(embedder, cached, box)
        engine = rag.Engine(ready_settings, embedder=watched)
        box.append(engine)
        open_for_search(engine)
        assert [name for name, _ in watched.calls] == [expected]
        assert engine._index.is_open  # the index is open either way: the collection and its lexical index
        if not cached:
            assert watched.calls == [("MainThread", False)]  # an uncached encoder (PyTorch) loads alone, first
        assert [h.source for h in engine.search("When was the Ottawa Convention signed?", k=2)]


def test_the_library_retriever_is_also_a_langchain_retriever(ready_engine):
    from langchain_core.retrievers import BaseRetriever

    ours = ready_engine.retriever(k=3)
    theirs = ours.as_langchain()
    assert isinstance(theirs, BaseRetriever)
    query = "When was the Ottawa Convention signed?"
    assert [d.id for d in theirs.invoke(query)] == [d.id for d in ours.invoke(query)] and len(ours.invoke(query)) == 3
