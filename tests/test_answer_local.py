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
    second = local_engine.ask(
        "How many countries have joined it?", history=[("What does the Ottawa Convention ban?", first.answer)]
    )
    assert "ottawa" in second.standalone_question.lower(), second.standalone_question
    assert not second.refused and "164" in second.answer
    assert any("164" in c.quote for c in second.citations)


def test_a_later_process_restores_the_saved_prompt_prefix_instead_of_reading_it(ready_settings, tmp_path):
    """Cold `rag ask`: the first process reads the fixed prompt prefix and saves the runtime's state; the next one
    restores it (reading only the question and its passages) and writes the same answer."""
    import json
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    env.update(
        # the retrieved way's prefix; the whole corpus's saved reading: test_whole_local.py
        RAG_ANSWER_MODE="retrieved",
        RAG_INDEX_DIR=str(ready_settings.index_dir),
        RAG_CORPUS_DIR=str(ready_settings.corpus_dir),
        RAG_LLM_STATE_DIR=str(tmp_path / "states"),
        RAG_LLM_THREADS="2",
        HF_HUB_OFFLINE="1",
    )
    runs = []
    for _ in range(2):
        done = subprocess.run(
            [sys.executable, "-m", "rag", "ask", "--local", "--json", "When was the Ottawa Convention signed?"],
            env=env,
            cwd=ready_settings.corpus_dir.parent,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr
        runs.append(json.loads(done.stdout))
    first, second = runs
    assert len(list((tmp_path / "states").glob("prompt-*.bin"))) == 1  # saved once, by the first process
    for run in runs:  # the question reads only its own part: the prefix is held before it (read, then restored)
        assert run["timings"]["cached_tokens"] > 1000 and run["timings"]["prompt_tokens"] < 500, run["timings"]
    # The first process waited for the prefix to be read (about 1,200 tokens at ~30 ms); the second restored it.
    assert second["timings"]["first_token_ms"] < first["timings"]["first_token_ms"] / 2, (
        first["timings"],
        second["timings"],
    )
    assert second["answer"] == first["answer"] and not second["refused"]
