"""The whole chain with the real embedded model (Qwen2.5-Coder-1.5B-Instruct on llama.cpp): a few real cases."""

import pytest

import rag
from rag.answer import REFUSAL
from rag.load import load

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def local_engine(ready_settings, embedder):
    engine = rag.Engine(ready_settings.model_copy(update={"llm_backend": "local"}), embedder=embedder)
    engine.llm().load()
    return engine


def _source_text(settings, source):
    return load(settings.corpus_dir.parent / source).text


@pytest.mark.parametrize(
    "question,fact",
    [
        ("When was the Ottawa Convention signed?", "1997"),
        ("How long is Finland's border with Russia?", "800"),
        ("How long do non-persistent mines stay active?", "two weeks"),
    ],
)
def test_answers_with_a_citation_whose_quote_holds_the_fact(local_engine, ready_settings, question, fact):
    answer = local_engine.ask(question)
    assert not answer.refused, answer
    assert fact in answer.answer
    assert any(fact in c.quote for c in answer.citations), answer.citations
    for c in answer.citations:
        assert _source_text(ready_settings, c.source)[c.start : c.end] == c.quote
        assert f"[{c.n}]" in answer.answer
    assert answer.timings["first_token_ms"] <= answer.timings["total_ms"]


def test_out_of_corpus_question_is_refused(local_engine):
    answer = local_engine.ask("Who won the 2022 football world cup?")
    assert answer.refused and answer.answer == REFUSAL and answer.citations == []


def test_follow_up_is_answered_from_the_history(local_engine):
    first = local_engine.ask("What does the Ottawa Convention ban?")
    assert not first.refused and "mine" in first.answer.lower()
    second = local_engine.ask("How many countries have joined it?", history=[("What does the Ottawa Convention ban?", first.answer)])
    assert "ottawa" in second.standalone_question.lower(), second.standalone_question
    assert not second.refused and "164" in second.answer
    assert any("164" in c.quote for c in second.citations)
