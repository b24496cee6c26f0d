"""Asking one document or a few: retrieval (dense and BM25 both) sees only the chosen documents, everywhere a
question comes in (library, command line, API, chat); an unknown document is a clear error."""

import json

import httpx
import pytest

import rag
from rag.errors import InputError
from rag.lexical import LexicalIndex
from ui import serve as ui_serve
from ui.chat import respond

from .fakes import ScriptedChatModel
from .servers import free_port, wait_for_port

EXPERTS = "corpus/experts-urge-britain-reconsider-landmines.md"
BALTIC = "corpus/baltic-states-poland-finland-leave-ottawa-convention.md"
Q = "How long is Finland's border with Russia?"  # only the experts article gives the 800 miles


def test_bm25_ranks_only_the_allowed_chunks():
    index = LexicalIndex.build(["a", "b", "c"], ["mines mines mines border", "mines border", "a border far away"], "s")
    assert [i for i, _ in index.search("mines border", 3)][:2] == ["a", "b"]
    assert [i for i, _ in index.search("mines border", 3, allowed={"c"})] == ["c"]  # masked before ranking, not after
    assert index.search("mines", 3, allowed={"c"}) == [] and index.search("mines", 3, allowed=set()) == []


@pytest.mark.parametrize("mode", ["hybrid", "dense", "lexical"])
def test_retrieval_sees_only_the_chosen_documents(ready_engine, mode):
    everything = ready_engine.search(Q, k=6, mode=mode)
    other = BALTIC if everything[0].source == EXPERTS else EXPERTS  # not the best-ranked document: the filter must bite
    only = ready_engine.search(Q, k=6, mode=mode, sources=[other])
    assert len(only) >= 3 and {h.source for h in only} == {other}  # the chosen document's best, not what is left over
    assert ready_engine.search(Q, k=6, mode=mode, sources=[EXPERTS, BALTIC]) == everything


def test_a_document_is_named_by_its_source_or_a_unique_file_name(ready_engine):
    assert ready_engine.check_sources(["experts-urge-britain-reconsider-landmines.md"]) == (EXPERTS,)
    assert ready_engine.check_sources([BALTIC, BALTIC]) == (BALTIC,)
    assert ready_engine.check_sources([]) is None
    with pytest.raises(InputError, match=r"'nope.md' is not an indexed document; give one of: corpus/baltic"):
        ready_engine.search(Q, sources=["nope.md"])


def test_an_answer_from_chosen_documents_cites_only_them(ready_settings, embedder):
    engine = rag.Engine(
        ready_settings.model_copy(update={"llm_backend": "local"}), embedder=embedder, llm=ScriptedChatModel()
    )
    events = list(engine.ask_stream(Q, [], rag.QueryParams(sources=(BALTIC,))))
    passages, final = events[0].data, events[-1].data
    assert passages and {p.source for p in passages} == {BALTIC}
    assert all(c.source == BALTIC for c in final.citations)
    with pytest.raises(InputError):
        engine.ask(Q, [], rag.QueryParams(sources=("nope.md",)))
    # The chat's handler passes the picker's choice through.
    titles = {d["source"]: d["title"] for d in engine.admin.documents()}
    for chosen, left_out in ((BALTIC, EXPERTS), (EXPERTS, BALTIC)):
        html = list(respond(Q, [], 4, "local", [chosen], engine=engine))[-1][1]
        assert titles[chosen] in html and titles[left_out] not in html


def test_cli_search_and_ask_take_source(ready_settings, monkeypatch, capsys):
    from rag import cli

    for name, value in {"RAG_INDEX_DIR": ready_settings.index_dir, "RAG_CORPUS_DIR": ready_settings.corpus_dir}.items():
        monkeypatch.setenv(name, str(value))
    monkeypatch.chdir(ready_settings.corpus_dir.parent)
    assert cli.main(["search", "--json", "-k", "5", "--source", BALTIC, Q]) == 0
    assert {h["source"] for h in json.loads(capsys.readouterr().out)["hits"]} == {BALTIC}
    assert cli.main(["ask", "--local", "--backend", "extractive", "--json", "--source", BALTIC, Q]) == 0
    assert {c["source"] for c in json.loads(capsys.readouterr().out)["citations"]} <= {BALTIC}
    assert cli.main(["search", "--source", "nope.md", Q]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is not an indexed document" in err[0]


def test_the_api_takes_sources(ready_settings, embedder):
    settings = ready_settings.model_copy(update={"llm_backend": "local"})
    port = free_port()
    ui_serve.launch(rag.Engine(settings, embedder=embedder, llm=ScriptedChatModel()), port=port, block=False)
    try:
        wait_for_port(port)
        base = f"http://127.0.0.1:{port}/v1"
        hits = httpx.post(f"{base}/search", json={"query": Q, "k": 5, "sources": [BALTIC]}).json()["hits"]
        assert hits and {h["source"] for h in hits} == {BALTIC}
        body = {"model": "rag", "messages": [{"role": "user", "content": Q}], "sources": [BALTIC]}
        reply = httpx.post(f"{base}/chat/completions", json=body, timeout=60).json()
        assert all(c["source"] == BALTIC for c in reply["rag"]["citations"])
        bad = httpx.post(f"{base}/chat/completions", json=body | {"sources": ["nope.md"]}, timeout=60)
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "sources"
        assert httpx.post(f"{base}/search", json={"query": Q, "sources": ["nope.md"]}).status_code == 400
    finally:
        ui_serve.close_all()
