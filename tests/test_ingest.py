import shutil

import pytest

import rag
from rag.catalog import Catalog
from rag.errors import IndexBusyError, IndexMismatchError
from rag.load import load

QUESTION = "When was the Ottawa Convention signed?"
BALTIC = "corpus/baltic-states-poland-finland-leave-ottawa-convention.md"
EXPERTS = "corpus/experts-urge-britain-reconsider-landmines.md"


def _chunks_by_source(engine):
    out = {}
    for doc in engine.store.get():
        out.setdefault(doc.metadata["source"], []).append(doc)
    return out


def _assert_consistent(engine, workdir):
    """Record store and vector store agree; no duplicates; every chunk traces back to its source span."""
    docs = engine.store.get()
    ids = [d.id for d in docs]
    assert len(ids) == len(set(ids))
    assert sorted(engine.store.records.list_keys()) == sorted(ids)
    seen = set()
    for d in docs:
        m = d.metadata
        key = (m["source"], m["start"], m["end"])
        assert key not in seen
        seen.add(key)
    for source, chunks in _chunks_by_source(engine).items():
        text = load(workdir / source).text
        for d in chunks:
            assert text[d.metadata["start"] : d.metadata["end"]] == d.page_content


def test_ingest_persist_reopen_same_hits(engine, settings, embedder, workdir):
    report = engine.ingest()
    assert sorted(report.added) == [BALTIC, EXPERTS] and report.ok
    assert report.chunks_total == report.chunks_added > 0
    hits = engine.search(QUESTION, k=3)
    assert any("signed in 1997" in h.text for h in hits)
    for h in hits:
        assert h.title and h.source in (BALTIC, EXPERTS) and h.end > h.start

    reopened = rag.Engine(rag.Settings(corpus_dir=settings.corpus_dir, index_dir=settings.index_dir), embedder=embedder)
    again = reopened.search(QUESTION, k=3)
    assert [(h.chunk_id, h.score) for h in again] == [(h.chunk_id, h.score) for h in hits]
    _assert_consistent(reopened, workdir)


def test_search_matches_brute_force_cosine(engine):
    import numpy as np

    engine.ingest()
    docs = engine.store.get()
    vectors = np.array(engine.embedder.embed_documents([d.page_content for d in docs]))
    query = np.array(engine.embedder.embed_query(QUESTION))
    expected = [docs[i].id for i in np.argsort(-(vectors @ query))[:5]]
    assert [h.chunk_id for h in engine.search(QUESTION, k=5)] == expected


def test_reingest_unchanged_embeds_nothing(engine, workdir):
    first = engine.ingest()
    before = engine.embedder.texts_embedded
    second = engine.ingest()
    assert engine.embedder.texts_embedded == before
    assert second.texts_embedded == 0 and second.chunks_added == 0 and second.chunks_deleted == 0
    assert sorted(second.skipped) == [BALTIC, EXPERTS]
    assert second.chunks_total == first.chunks_total
    assert "0 added, 0 updated, 2 skipped, 0 deleted, 0 failed" in second.summary()


def test_edited_file_replaces_its_chunks(engine, workdir):
    engine.ingest()
    path = workdir / EXPERTS
    text = path.read_text()
    path.write_text(
        text.replace("164 nations", "165 nations") + "\n\nA new closing paragraph about demining budgets.\n"
    )
    report = engine.ingest()
    assert report.updated == [EXPERTS] and report.skipped == [BALTIC]
    assert 0 < report.texts_embedded < report.chunks_total
    chunks = _chunks_by_source(engine)[EXPERTS]
    joined = " ".join(d.page_content for d in chunks)
    assert "165 nations" in joined and "164 nations" not in joined and "demining budgets" in joined
    _assert_consistent(engine, workdir)


def test_deleted_file_loses_its_chunks(engine, workdir):
    engine.ingest()
    (workdir / BALTIC).unlink()
    report = engine.ingest()
    assert report.deleted == [BALTIC] and report.chunks_deleted > 0
    assert set(_chunks_by_source(engine)) == {EXPERTS}
    _assert_consistent(engine, workdir)


def test_same_content_under_two_names_is_stored_once(engine, workdir):
    first = engine.ingest()
    shutil.copy(workdir / EXPERTS, workdir / "corpus" / "copy-of-experts.md")
    report = engine.ingest()
    assert report.duplicates == {"corpus/copy-of-experts.md": EXPERTS}
    assert report.chunks_total == first.chunks_total and report.texts_embedded == 0
    # Renaming (delete + add of the same content) keeps one copy under the new name.
    (workdir / EXPERTS).unlink()
    report = engine.ingest()
    assert set(_chunks_by_source(engine)) == {BALTIC, "corpus/copy-of-experts.md"}
    assert report.chunks_total == first.chunks_total
    _assert_consistent(engine, workdir)


def test_bad_file_is_reported_and_the_rest_indexed(engine, workdir):
    (workdir / "corpus" / "garbage.txt").write_bytes(bytes(range(256)) * 8)
    (workdir / "corpus" / "empty.md").write_text("   \n")
    (workdir / "corpus" / ".hidden.md").write_text("secret notes")
    report = engine.ingest()
    assert not report.ok
    assert set(report.failed) == {"corpus/garbage.txt", "corpus/empty.md"}
    assert "binary" in report.failed["corpus/garbage.txt"]
    assert sorted(report.added) == [BALTIC, EXPERTS]
    assert set(_chunks_by_source(engine)) == {BALTIC, EXPERTS}


def test_file_that_turns_bad_keeps_its_old_chunks(engine, workdir):
    engine.ingest()
    before = len(_chunks_by_source(engine)[EXPERTS])
    (workdir / EXPERTS).write_bytes(b"\x00\x01\x02" * 1000)
    report = engine.ingest()
    assert EXPERTS in report.failed and not report.deleted
    assert len(_chunks_by_source(engine)[EXPERTS]) == before


def test_manifest_mismatch_fails_loudly_and_rebuild_switches(engine, settings, embedder, workdir):
    engine.ingest()
    old = Catalog(settings).manifest()
    other = rag.Engine(
        rag.Settings(corpus_dir=settings.corpus_dir, index_dir=settings.index_dir, chunk_size=120, chunk_overlap=20),
        embedder=embedder,
    )
    with pytest.raises(IndexMismatchError, match=r"rag ingest --rebuild"):
        other.search(QUESTION)
    with pytest.raises(IndexMismatchError, match="chunk_size: index has 200, settings say 120"):
        other.ingest()
    report = other.ingest(rebuild=True)
    new = Catalog(settings).manifest()
    assert new["collection"] != old["collection"] and new["chunk_size"] == 120 and new["dimension"] == 384
    assert report.chunks_total > 0
    assert all(h.text for h in other.search(QUESTION))
    names = [c.name for c in other.store.client.list_collections()]
    assert old["collection"] not in names and new["collection"] in names
    with pytest.raises(IndexMismatchError):
        rag.Engine(settings, embedder=embedder).search(QUESTION)


def test_a_second_writer_fails_fast_with_a_clear_message(engine, settings):
    with Catalog(settings).writing():
        with pytest.raises(IndexBusyError, match="another process is writing"):
            engine.ingest()


def test_ingest_explicit_paths_into_another_index(embedder, workdir):
    other = workdir / "elsewhere"
    other.mkdir()
    (other / "note.md").write_text("# Demining\n\nClearing a minefield takes years of careful work.\n")
    eng = rag.Engine(rag.Settings(index_dir=workdir / "other-index"), embedder=embedder)
    report = eng.ingest([other])
    assert report.added == ["elsewhere/note.md"]
    assert eng.search("how long does demining take", k=1)[0].source == "elsewhere/note.md"
    assert not (workdir / "index").exists()


@pytest.mark.server
def test_server_mode_against_a_real_chroma_server(embedder, workdir, chroma_server):
    settings = rag.Settings(corpus_dir=workdir / "corpus", index_dir=workdir / "index", chroma_url=chroma_server)
    eng = rag.Engine(settings, embedder=embedder)
    report = eng.ingest()
    assert report.chunks_total > 0 and report.ok
    assert type(eng.store.client).__name__ != "PersistentClient"
    assert not (workdir / "index" / "chroma").exists()
    assert any("signed in 1997" in h.text for h in eng.search(QUESTION, k=3))
    assert eng.ingest().texts_embedded == 0


def test_documents_never_split_across_index_batches(embedder, workdir):
    """LangChain's incremental cleanup would delete a source's chunks that another batch holds: batches keep documents
    whole."""
    for i in range(6):
        (workdir / "corpus" / f"extra{i}.md").write_text(
            " ".join(f"Extra document {i} sentence {j} about survey teams." for j in range(80))
        )
    eng = rag.Engine(
        rag.Settings(corpus_dir=workdir / "corpus", index_dir=workdir / "index", index_batch_size=7), embedder=embedder
    )
    first = eng.ingest()
    assert first.chunks_added == first.chunks_total
    again = eng.ingest()
    assert again.texts_embedded == 0 and again.chunks_deleted == 0 and again.chunks_total == first.chunks_total


def test_preview_makes_the_chunks_ingest_stores_and_stores_nothing(engine, workdir):
    preview = engine.docs.preview([workdir / "corpus"])
    assert preview and not engine.has_index() and not (workdir / "index").exists()
    assert len({h.chunk_id for h in preview}) == len(preview) and all(
        h.chunk_id.startswith(h.source + "#") for h in preview
    )
    engine.ingest()
    assert sorted((h.source, h.start, h.end, h.text) for h in preview) == sorted(
        (h.source, h.start, h.end, h.text) for h in engine.docs.chunks()
    )
