"""The whole corpus's saved reading on the real runtime (#27): read once by `rag ingest`, restored by a later
process that then reads only its question; read anew after an edit (the old text never cited); a process killed
while saving leaves no half-written state. A small corpus keeps each reading to seconds."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

import rag
from rag import whole

pytestmark = pytest.mark.slow

DOCS = {
    "ferry.md": "# Lake ferry\n\nThe lake ferry service started in 1951. Each ferry carries 120 passengers. "
    "The service does not run in winter, because the lake freezes.\n",
    "observatory.md": "# Hill observatory\n\nThe hill observatory was built in 1968 on a ridge above the town. "
    "Its main telescope has a 2.5 metre mirror. The observatory is not a member of the regional science network.\n",
}


@pytest.fixture
def small(tmp_path):
    (tmp_path / "corpus").mkdir()
    for name, text in DOCS.items():
        (tmp_path / "corpus" / name).write_text(text)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    env.update(
        RAG_ANSWER_MODE="auto", RAG_LLM_STATE_DIR=str(tmp_path / "states"), RAG_LLM_THREADS="2", HF_HUB_OFFLINE="1"
    )
    return tmp_path, env


def _rag(root, env, *args, timeout=600):
    return subprocess.run(
        [sys.executable, "-m", "rag", *args], cwd=root, env=env, capture_output=True, text=True, timeout=timeout
    )


def _saved(root):
    return sorted(p.name for p in (root / "states").glob("prompt-*.bin"))


def test_ingest_reads_the_corpus_once_and_a_later_process_only_reads_its_question(small):
    root, env = small
    run = _rag(root, env, "ingest")
    assert run.returncode == 0, run.stderr
    assert "read the 2 documents whole" in run.stdout, run.stdout
    saved = _saved(root)
    assert len(saved) == 1, saved
    again = _rag(root, env, "ingest")
    assert "saved reading is current" in again.stdout and _saved(root) == saved, "an unchanged corpus is not read again"

    ask = _rag(root, env, "ask", "--local", "--json", "How many passengers does each ferry carry?")
    assert ask.returncode == 0, ask.stderr
    answer = json.loads(ask.stdout)
    assert answer["way"] == whole.WHOLE and "120" in answer["answer"], answer
    assert any("120" in c["quote"] for c in answer["citations"])
    timings = answer["timings"]
    assert timings["prompt_tokens"] < 80, f"only the question is read: {timings}"
    assert timings["cached_tokens"] > 1200, f"the instructions and documents come from the saved reading: {timings}"

    config = json.loads(_rag(root, env, "config").stdout)
    assert config["answering"]["way"] == whole.WHOLE and "2 documents" in config["answering"]["why"]


def test_an_edit_is_read_anew_and_the_old_text_is_never_cited(small, embedder, monkeypatch):
    root, _ = small
    monkeypatch.chdir(root)
    settings = rag.Settings(
        corpus_dir=root / "corpus", index_dir=root / "index", answer_mode="auto", llm_state_dir=root / "states",
        llm_threads=2, llm_states_max=1,
    )  # fmt: skip
    engine = rag.Engine(settings, embedder=embedder)
    assert engine.ingest().ok
    assert engine.read_corpus()["how"] == "read"
    first = engine.ask("When did the lake ferry service start?")
    assert first.way == whole.WHOLE and "1951" in first.answer, first
    before = _saved(root)

    path = root / "corpus" / "ferry.md"
    path.write_text(path.read_text().replace("1951", "1953"))
    assert engine.ingest().ok
    second = engine.ask("When did the lake ferry service start?")
    assert second.way == whole.WHOLE
    assert "1951" not in second.answer and all("1951" not in c.quote for c in second.citations), second
    assert "1953" in second.answer, second
    after = _saved(root)
    assert len(after) == 1 and after != before, (
        "a new reading for the new text; the old one dropped (RAG_LLM_STATES_MAX=1)"
    )


PRIME = """
import sys, rag
engine = rag.Engine(rag.load_settings())
print("reading", flush=True)
engine.read_corpus()
print("done", flush=True)
"""


def test_a_process_killed_while_saving_leaves_no_half_written_state(small):
    root, env = small
    env = env | {"RAG_ANSWER_MODE": "retrieved"}
    assert _rag(root, env, "ingest").returncode == 0
    env["RAG_ANSWER_MODE"] = "auto"
    states = root / "states"
    states.mkdir(exist_ok=True)
    proc = subprocess.Popen(
        [sys.executable, "-c", PRIME], cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    try:
        deadline = time.monotonic() + 600
        while not list(states.glob(".prompt-*.bin.*")):  # the save has begun: kill it there
            assert proc.poll() is None and time.monotonic() < deadline, "the reading ended before its save was seen"
            time.sleep(0.002)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not _saved(root), "nothing under the final name: a later process never restores a partial state"

    run = _rag(root, env, "ingest")
    assert "read the 2 documents whole" in run.stdout, run.stdout + run.stderr
    assert len(_saved(root)) == 1 and not list(states.glob(".prompt-*")), (
        "read afresh; the dead process's partial file removed"
    )
    ask = json.loads(
        _rag(
            root, env, "ask", "--local", "--json", "Is the observatory a member of the regional science network?"
        ).stdout
    )
    assert ask["way"] == whole.WHOLE and ask["timings"]["prompt_tokens"] < 80, ask["timings"]
