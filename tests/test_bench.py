"""A quick smoke run of the benchmark (the benchmark itself is `make bench`, not a test)."""

import json
import subprocess
import sys

import pytest

from evals.bench import ROOT, bench_answers, generate_corpus, pct
from evals.suite import DEFAULT_SUITE, load

from .fakes import ReplayChatModel


def test_generated_corpora_are_deterministic_and_sized(tmp_path):
    a = generate_corpus(200, tmp_path / "a", seed=3)
    b = generate_corpus(200, tmp_path / "b", seed=3)
    files = sorted(p.name for p in a.glob("*.md"))
    assert files == sorted(p.name for p in b.glob("*.md")) and len(files) == 10
    assert all((a / f).read_text() == (b / f).read_text() for f in files)
    assert (a / files[0]).read_text() != generate_corpus(200, tmp_path / "c", seed=4).joinpath(files[0]).read_text()


def test_percentiles_are_the_eval_metrics_ones():
    import math

    assert pct([5, 1, 3, 2, 4], 50) == 3 and pct([1, 2, 3, 4], 95) == 3.85 and math.isnan(pct([], 50))


@pytest.mark.heavy
def test_bench_smoke_run_writes_json_and_a_table(tmp_path):
    cmd = [sys.executable, "-m", "evals.bench", "--scales", "real", "--synthetic", "0", "--answers", "0",
           "--serving", "0", "--backend", "extractive", "--out", str(tmp_path)]  # fmt: skip
    had_index = (ROOT / "index").exists()
    run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-2000:]
    (out,) = tmp_path.iterdir()
    result = json.loads((out / "bench.json").read_text())
    (real,) = result["scales"]
    assert real["chunks"] > 0 and real["reingest_embedded"] == 0 and real["search_p50_ms"] > 0
    assert "| real |" in run.stdout and (out / "bench.md").read_text() in run.stdout
    assert (ROOT / "index").exists() == had_index


@pytest.mark.heavy
def test_answering_bench_uses_its_own_index_of_the_real_corpus(tmp_path, monkeypatch):
    """Ours and the baseline answer the same questions with the same (here: scripted) model; index/ is not needed."""
    monkeypatch.setattr("rag.engine.make_chat_model", lambda name, settings: ReplayChatModel(["I don't know."]))
    had_index = (ROOT / "index").exists()
    single = [c for c in load(DEFAULT_SUITE) if not c.history]
    # One answerable case and one that is not: "I don't know." is a refusal, right for the second only, so an
    # accuracy of 0 (refusals never credited) or 1 (every answer credited) are both caught.
    cases = [next(c for c in single if c.answerable), next(c for c in single if not c.answerable)]
    result = bench_answers(cases, "local", tmp_path)
    assert result["questions"] == 2 and (tmp_path / "index-real").is_dir()
    for side in ("ours", "baseline"):
        assert result[side]["total_p50_ms"] > 0 and result[side]["accuracy"] == 0.5, (side, result[side])
    assert (ROOT / "index").exists() == had_index
