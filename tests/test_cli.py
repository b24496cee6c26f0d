"""The `rag` command end to end, in fresh processes, with the network blocked."""

import json
import os
import subprocess
import sys

import pytest

from .servers import free_port

QUESTION = "When was the Ottawa Convention signed?"


@pytest.fixture
def offline_env(workdir, tmp_path):
    """No network: proxies to a dead loopback port, offline flags, and an empty cache (tiktoken files included)."""
    dead = f"http://127.0.0.1:{free_port()}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAG_", "TIKTOKEN_"))}
    env.update(
        HTTP_PROXY=dead,
        HTTPS_PROXY=dead,
        http_proxy=dead,
        https_proxy=dead,
        ALL_PROXY=dead,
        NO_PROXY="",
        no_proxy="",
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        ANONYMIZED_TELEMETRY="False",
        GRADIO_ANALYTICS_ENABLED="False",
        XDG_CACHE_HOME=str(tmp_path / "empty-cache"),
        HF_HOME=str(tmp_path / "empty-hf"),
        RAG_ANSWER_MODE="retrieved",  # `rag ingest` would read the corpus into the model (the whole-corpus tests do)
    )
    return env


def rag_cli(*args, env, cwd):
    return subprocess.run(
        [sys.executable, "-m", "rag", *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=300
    )


@pytest.mark.heavy
def test_offline_ingest_then_search_json(workdir, offline_env):
    run = rag_cli("ingest", env=offline_env, cwd=workdir)
    assert run.returncode == 0, run.stderr
    assert "2 added, 0 updated, 0 skipped, 0 deleted, 0 failed" in run.stdout
    assert (workdir / "empty-cache" / "rag" / "tiktoken").is_dir(), "tokenizer came from the packaged copy"

    run = rag_cli("search", QUESTION, "-k", "3", "--json", env=offline_env, cwd=workdir)
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert out["query"] == QUESTION and len(out["hits"]) == 3
    assert set(out["hits"][0]) == {"chunk_id", "source", "title", "score", "text", "start", "end"}
    assert any("signed in 1997" in h["text"] for h in out["hits"])

    run = rag_cli("ingest", env=offline_env, cwd=workdir)
    assert "0 added, 0 updated, 2 skipped" in run.stdout and "(0 chunks embedded" in run.stdout


@pytest.mark.heavy
def test_cli_reports_bad_files_and_exits_nonzero(workdir, offline_env):
    (workdir / "corpus" / "bad.txt").write_bytes(b"\x00\xff" * 500)
    run = rag_cli("ingest", "--index", str(workdir / "idx2"), env=offline_env, cwd=workdir)
    assert run.returncode == 1
    assert "failed: corpus/bad.txt: binary content" in run.stderr
    assert "2 added" in run.stdout and "1 failed" in run.stdout
    assert (workdir / "idx2" / "manifest.json").is_file()


def test_cli_errors_are_one_line(workdir, offline_env):
    run = rag_cli("search", "anything", "--index", str(workdir / "nowhere"), env=offline_env, cwd=workdir)
    assert (
        run.returncode == 3
        and run.stderr.strip() == f"error: no index at {workdir / 'nowhere'}; run `rag ingest` first"
    )
    env = {**offline_env, "RAG_CHUNK_OVERLAP": "500"}
    run = rag_cli("config", env=env, cwd=workdir)
    assert run.returncode == 2 and len(run.stderr.strip().splitlines()) == 1 and "chunk_overlap" in run.stderr


def test_config_file_and_env_resolve(workdir, offline_env):
    (workdir / "rag.toml").write_text('chunk_size = 300\ncorpus_dir = "docs"\n')
    env = {**offline_env, "RAG_CHUNK_OVERLAP": "50"}
    run = rag_cli("config", env=env, cwd=workdir)
    cfg = json.loads(run.stdout)
    assert (cfg["chunk_size"], cfg["chunk_overlap"], cfg["corpus_dir"]) == (300, 50, "docs")


ASK_KEYS = {"question", "standalone_question", "answer", "refused", "citations", "timings"}
CITATION_KEYS = {"n", "chunk_id", "source", "title", "text", "quote", "start", "end", "page"}


@pytest.mark.heavy
def test_ask_json_and_history_end_to_end(ready_settings, offline_env, tmp_path):
    """`rag ask --json` on an index of the real corpus, without a model: the documented keys, quotes that are exact
    spans of their document, and `--history` that turns a follow-up into a standalone question."""
    from rag.load import load

    root = ready_settings.corpus_dir.parent  # source ids read "corpus/…" from here
    env = {
        **offline_env,
        "RAG_INDEX_DIR": str(ready_settings.index_dir),
        "RAG_CORPUS_DIR": str(ready_settings.corpus_dir),
    }

    run = rag_cli("ask", QUESTION, "--json", "--backend", "extractive", env=env, cwd=root)
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert ASK_KEYS <= set(out), sorted(out)
    assert out["question"] == out["standalone_question"] == QUESTION
    assert out["refused"] is False and "1997" in out["answer"] and out["citations"]
    assert out["timings"] and all(isinstance(v, (int, float)) and v >= 0 for v in out["timings"].values())
    for c in out["citations"]:
        assert set(c) == CITATION_KEYS
        assert f"[{c['n']}]" in out["answer"]
        document = load(root / c["source"], source=c["source"]).text
        raw = (root / c["source"]).read_text(encoding="utf-8")
        assert c["quote"] and document[c["start"] : c["end"]] == c["quote"], (
            "start/end point at the quote in the document"
        )
        assert c["quote"] in c["text"] and c["quote"] in raw
    assert any("1997" in c["quote"] for c in out["citations"])

    history = tmp_path / "history.json"
    history.write_text(json.dumps([["What does the Ottawa Convention ban?", "Anti-personnel mines [1]."]]))
    run = rag_cli(
        "ask", "When was it signed?", "--json", "--history", str(history), "--backend", "extractive", env=env, cwd=root
    )
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert ASK_KEYS <= set(out) and out["question"] == "When was it signed?"
    assert out["standalone_question"] == "When was it signed? (follow-up to: What does the Ottawa Convention ban?)"

    for bad in ('[["only the user\'s half"]]', "{not json"):
        history.write_text(bad)
        run = rag_cli(
            "ask", "When was it signed?", "--history", str(history), "--backend", "extractive", env=env, cwd=root
        )
        assert run.returncode == 2 and run.stdout == "", (run.returncode, run.stdout, run.stderr)
        lines = run.stderr.strip().splitlines()
        assert (
            len(lines) == 1
            and lines[0].startswith(f"error: --history {history}:")
            and "[user, assistant] pairs" in lines[0]
        ), lines


def test_search_into_a_reader_that_left_is_quiet(ready_settings, offline_env):
    """`rag search ... | head`: the reader closing the pipe is no error of ours (before: a BrokenPipeError
    traceback)."""
    env = {
        **offline_env,
        "RAG_INDEX_DIR": str(ready_settings.index_dir),
        "RAG_CORPUS_DIR": str(ready_settings.corpus_dir),
    }
    env = {k: v for k, v in env.items() if k not in ("XDG_CACHE_HOME", "HF_HOME")}  # the ONNX copy already made
    for extra in ([], ["--json"]):
        proc = subprocess.Popen(
            [sys.executable, "-m", "rag", "search", QUESTION, *extra],
            env=env,
            cwd=ready_settings.corpus_dir.parent,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        proc.stdout.close()  # gone before the first hit is written
        err = proc.stderr.read()
        assert proc.wait(timeout=120) == 0 and "Traceback" not in err and "Error" not in err, err
