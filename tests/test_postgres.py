"""The record store and the saved conversations on a real PostgreSQL (Debian's, started by the tests on 127.0.0.1):
the first step of running several machines on shared services."""

import psycopg
import pytest

import rag
from rag.conversations import ConversationNotFound, Conversations

pytestmark = [pytest.mark.server, pytest.mark.postgres]
BALTIC = "corpus/baltic-states-poland-finland-leave-ottawa-convention.md"
EXPERTS = "corpus/experts-urge-britain-reconsider-landmines.md"


def _rows(url: str, sql: str) -> list[tuple]:
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as conn:
        return conn.execute(sql).fetchall()


def test_ingestion_keeps_its_records_in_postgresql(workdir, embedder, postgres_url):
    settings = rag.Settings(corpus_dir=workdir / "corpus", index_dir=workdir / "index", record_db_url=postgres_url)
    engine = rag.Engine(settings, embedder=embedder)
    first = engine.ingest()
    assert first.ok and sorted(first.added) == [BALTIC, EXPERTS] and first.chunks_total > 10
    assert not (workdir / "index" / "records.sqlite").exists()  # nothing went to the local SQLite default
    by_source = dict(_rows(postgres_url, "SELECT group_id, COUNT(*) FROM upsertion_record GROUP BY group_id"))
    assert set(by_source) == {BALTIC, EXPERTS} and sum(by_source.values()) == first.chunks_total

    again = engine.ingest()  # unchanged: the records say so, nothing is embedded
    assert sorted(again.skipped) == [BALTIC, EXPERTS] and again.texts_embedded == 0

    (workdir / EXPERTS).unlink()
    gone = engine.ingest()
    assert gone.deleted == [EXPERTS] and gone.chunks_deleted == by_source[EXPERTS]
    assert dict(_rows(postgres_url, "SELECT group_id, COUNT(*) FROM upsertion_record GROUP BY group_id")) == {
        BALTIC: by_source[BALTIC]
    }
    assert {h.source for h in engine.search("How long is Finland's border with Russia?", k=5)} == {BALTIC}


def test_saved_conversations_live_in_postgresql_per_owner(postgres_url):
    store = Conversations(postgres_url)
    cid = store.start("alice", "When was it signed?")
    store.add("alice", cid, rag.Answer("When was it signed?", "When was it signed?", "In 1997 [1].", False))
    elsewhere = Conversations(postgres_url)  # another process or machine on the same database
    assert elsewhere.get("alice", cid).turns[0].answer == "In 1997 [1]." and [
        s.id for s in elsewhere.list("alice")
    ] == [cid]
    with pytest.raises(ConversationNotFound):
        elsewhere.get("bob", cid)
    elsewhere.delete("alice", cid)
    assert store.list("alice") == [] and _rows(postgres_url, "SELECT COUNT(*) FROM conversation_turns") == [(0,)]
