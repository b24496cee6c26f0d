"""The whole corpus in view (#27), with scripted models: when it is chosen and why, what the model is shown (every
document once, the conversation after it), the checks that stay, and a serving process that reads in the background."""

import threading
import time

import pytest

import rag
from rag import whole
from rag.answer import REFUSAL
from rag.llm import KeepsState
from rag.whole import Reader

from .fakes import ReplayChatModel

Q = "When was the Ottawa Convention signed?"


@pytest.fixture
def whole_settings(ready_settings):
    return ready_settings.model_copy(update={"llm_backend": "local", "answer_mode": "auto"})


def _engine(settings, embedder, model):
    return rag.Engine(settings, embedder=embedder, llm=model)


def _chunks(engine, source=None):
    return engine.docs.chunks(source)


def test_auto_reads_the_whole_corpus_when_it_fits_and_says_why(whole_settings, embedder):
    engine = _engine(whole_settings, embedder, ReplayChatModel([]))
    way = engine.way()
    assert way.whole and way.name == whole.WHOLE
    assert "2 documents" in way.why and "8,192-token context" in way.why
    assert len(way.corpus.passages) == len(_chunks(engine)), "every chunk is a numbered passage"


@pytest.mark.parametrize(
    "update,reason",
    [
        ({"answer_mode": "retrieved"}, "RAG_ANSWER_MODE=retrieved"),
        ({"llm_backend": "extractive"}, "extractive backend"),
        ({"llm_n_ctx": 2048}, "fit beside the instructions"),
        ({"llm_backend": "openai"}, "context size is unknown"),
    ],
)
def test_the_retrieved_way_is_kept_and_said_why(whole_settings, embedder, update, reason):
    engine = _engine(whole_settings.model_copy(update=update), embedder, ReplayChatModel([]))
    way = engine.way()
    assert not way.whole and way.name == whole.RETRIEVED
    assert reason in way.why


def test_the_model_sees_every_document_once_and_the_answer_is_checked_against_all(whole_settings, embedder):
    model = ReplayChatModel(["The Ottawa Convention was signed in 1997 [3]. The moon is made of cheese [5]."])
    engine = _engine(whole_settings, embedder, model)
    answer = engine.ask(Q)
    prompt = model.calls[-1][-1].content
    for chunk in _chunks(engine):  # every sentence of every chunk is in the prompt (the overlap shown once)
        assert chunk.text.split(". ")[-1].strip()[:60] in prompt
    titles = {c.title for c in _chunks(engine)}
    assert all(prompt.count(f"({t})") == 1 for t in titles), "each title once"
    assert answer.way == whole.WHOLE and not answer.refused
    assert "1997" in answer.answer and "cheese" not in answer.answer and any("cheese" in s for s in answer.unsupported)
    ids = {c.chunk_id for c in _chunks(engine)}
    cited = answer.citations[0]
    assert cited.chunk_id in ids and "1997" in cited.quote, "the marker moved to the passage that says it"
    assert len(model.calls) == 1


def test_a_follow_up_carries_the_conversation_after_the_documents_without_a_rewrite(whole_settings, embedder):
    model = ReplayChatModel(["It was signed in 1997 [1]."])
    engine = _engine(whole_settings, embedder, model)
    history = [("What does the Ottawa Convention ban?", "It bans anti-personnel mines [1].")]
    answer = engine.ask("When was it signed?", history)
    assert len(model.calls) == 1, "no rewrite call: the model sees the conversation itself"
    prompt = model.calls[-1][-1].content
    documents_end = prompt.index("</passages>")
    talk = prompt.index(
        "Conversation so far:\nUser: What does the Ottawa Convention ban?\nAssistant: It bans anti-personnel mines"
    )
    assert documents_end < talk < prompt.index("Question: When was it signed?")
    assert "[1]" not in prompt[talk:], "markers of an earlier answer are not shown again"
    assert "Ottawa Convention" in answer.standalone_question, "the deterministic rewrite still finds the passages shown"


def test_the_documents_prefix_is_the_same_for_every_question(whole_settings, embedder):
    model = ReplayChatModel(["It was signed in 1997 [1].", "No [1]."])
    engine = _engine(whole_settings, embedder, model)
    engine.ask(Q)
    engine.ask("Did Finland leave the convention?", [(Q, "It was signed in 1997 [1].")])
    first, second = (c[-1].content for c in model.calls)
    prefix = first[: first.index("</passages>")]
    assert second.startswith(prefix), "a question reads only what follows the documents"
    assert [m.content for m in model.calls[0][:-1]] == [m.content for m in model.calls[1][:-1]]


def test_a_question_about_several_documents_is_shown_each_documents_best_passage_first(whole_settings, embedder):
    engine = _engine(whole_settings, embedder, ReplayChatModel(["x [1]."]))
    corpus = engine.way().corpus
    corpus.embed(embedder)
    question = "Do the two articles agree about why the countries left the treaty?"
    vector = embedder.embed_query(question)
    plain, _ = corpus.evidence(question, vector, 4)
    spread, _ = corpus.evidence(question, vector, 4, spread=True)
    sources = {p.source for p in corpus.passages}
    assert len({p.source for p in plain}) == 1, "the premise: by closeness alone one document fills the panel"
    assert {p.source for p in spread[: len(sources)]} == sources
    assert spread[0].n == plain[0].n, "the closest passage still leads"
    assert {p.n for p in spread} <= {p.n for p in corpus.evidence(question, vector, len(corpus.passages))[0]}


def test_only_the_chosen_documents_are_read_whole(whole_settings, embedder):
    model = ReplayChatModel(["An answer [1]."])
    engine = _engine(whole_settings, embedder, model)
    sources = sorted({c.source for c in _chunks(engine)})
    chosen, other = sources[0], sources[1]
    way = engine.way((chosen,))
    assert way.whole and way.corpus.sources == (chosen,)
    engine.ask(Q, params=rag.QueryParams(sources=(chosen,)))
    prompt = model.calls[-1][-1].content
    assert _chunks(engine, chosen)[0].text[:80] in prompt
    assert all(c.text[:80] not in prompt for c in _chunks(engine, other))


def test_an_unanswerable_question_far_from_every_document_is_refused_without_the_model(whole_settings, embedder):
    model = ReplayChatModel(["Paris [1]."])
    answer = _engine(whole_settings, embedder, model).ask("zxqv plorb glimmerfax?")
    assert answer.refused and answer.answer == REFUSAL and not model.calls


def test_a_yes_that_its_evidence_contradicts_is_corrected(whole_settings, embedder):
    engine = _engine(whole_settings, embedder, ReplayChatModel([]))
    sentence = next(  # a negated statement of the corpus, found by the check's own reading, not chosen by hand
        (s for c in _chunks(engine) for s in c.text.split(". ") if " not " in s and len(s.split()) < 30), None
    )
    assert sentence is not None, "the test corpus holds a short negated sentence"
    question = "Is it true that " + sentence.replace(" not ", " ", 1).rstrip(".") + "?"
    assert rag.cite.stance(question, sentence) == rag.cite.NO, (question, sentence)
    model = ReplayChatModel([f"Yes. {sentence.strip()} [1]."])
    answer = _engine(whole_settings, embedder, model).ask(question)
    assert answer.answer.startswith("No."), answer.answer


class ReadingModel(ReplayChatModel, KeepsState):
    """A scripted model that keeps prompt states like the embedded one: `has_state` false until `prime` has run (a
    reading that takes `read_s`)."""

    read_s: float = 0.0
    primed: list = []
    started: threading.Event | None = None

    def __init__(self, responses, read_s=0.0):
        super().__init__(responses)
        self.read_s, self.primed, self.started = read_s, [], threading.Event()

    def has_state(self, messages):
        return any(p == [m.content for m in messages] for p in self.primed)

    def prime(self, messages, progress=None):
        key = [m.content for m in messages]
        if key in self.primed:
            return "primed"
        self.started.set()
        if "<passages>\n[1] (" in key[-1] and "Why?" in key[-1] and len(key[-1]) > 2000:
            time.sleep(self.read_s)  # the whole corpus: a long read
        self.primed.append(key)
        return "read"


def test_a_serving_process_answers_retrieved_until_its_reading_is_ready_then_switches(whole_settings, embedder):
    model = ReadingModel(["It was signed in 1997 [1]."] * 3, read_s=1.5)
    engine = _engine(whole_settings, embedder, model)
    engine.hold_for_serving()
    try:
        first = engine.ask(Q)
        assert first.way == whole.RETRIEVED, "not ready: retrieved passages meanwhile"
        assert model.started.wait(5), "the reading started in the background"
        deadline = time.monotonic() + 30
        while not engine.way().whole or not model.has_state(Reader.messages(engine.way().corpus)):
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert engine.ask(Q).way == whole.WHOLE
    finally:
        engine.release_serving()


@pytest.mark.heavy
def test_an_edit_between_two_questions_is_read_anew_and_the_old_text_never_cited(
    whole_settings, embedder, tmp_path, monkeypatch
):
    import shutil

    root = tmp_path / "edit"
    shutil.copytree(whole_settings.corpus_dir, root / "corpus")
    monkeypatch.chdir(root)
    settings = whole_settings.model_copy(update={"corpus_dir": root / "corpus", "index_dir": root / "index"})
    model = ReplayChatModel(["The convention was signed in 1997 [1].", "The convention was signed in 1997 [1]."])
    engine = _engine(settings, embedder, model)
    assert engine.ingest().ok
    before = engine.way().corpus
    assert "1997" in engine.ask(Q).answer
    for path in (root / "corpus").glob("*.md"):
        path.write_text(path.read_text().replace("1997", "1897"))
    assert engine.ingest().ok
    after = engine.way().corpus
    assert after.key != before.key, "another corpus, another saved reading"
    answer = engine.ask(Q)
    prompt = model.calls[-1][-1].content
    assert "1997" not in prompt and "1897" in prompt
    assert all("1997" not in c.quote and "1997" not in c.text for c in answer.citations)
    assert "1997" not in answer.answer, "a figure the documents no longer give is removed"
