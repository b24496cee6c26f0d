"""This system against the plain LangChain recipe on the same cases, scored by the same scorer with the same refusal
rule; both sides' answers are kept, and the difference carries a confidence interval."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import rag
from evals.metrics import paired_bootstrap, wilson
from evals.scoring import score
from evals.suite import Case

log = logging.getLogger(__name__)
BASELINE_FILE = "baseline.jsonl"


def run_baseline(
    engine: rag.Engine, cases: list[Case], records: list[dict], run_dir: Path, tick: Callable[[], None] = lambda: None
) -> dict:
    """Answer every case without history with the baseline (same model, same embedder, the same document text), score
    both sides alike, save the baseline's answers, and compare."""
    from evals.baseline import Baseline

    if engine.settings.llm_backend == "extractive":
        raise ValueError("the baseline needs a language model; run with a model backend (e.g. --set llm_backend=local)")
    chosen = [c for c in cases if not c.history]
    baseline = Baseline(engine.embedder, engine.llm())
    baseline.ingest([(d["source"], engine.docs.document_text(d["source"])) for d in engine.admin.documents()])
    rows = []
    for case in chosen:
        try:
            res = baseline.ask(case.question)
        except Exception as exc:  # a failing case is wrong, and the run goes on
            log.warning("baseline case %s failed: %s", case.key, exc)
            res = {"answer": "", "refused": False, "error": f"{type(exc).__name__}: {exc}"}
        verdict = score(case, res["answer"], res["refused"])
        rows.append(
            {
                "key": case.key,
                "category": case.category,
                "question": case.question,
                "answer": res["answer"],
                "refused": verdict.refused,
                "passed": verdict.passed and not res.get("error"),
                "reasons": verdict.reasons,
                "error": res.get("error"),
                "timings": {k: round(v, 1) for k, v in res.items() if k.endswith("_ms")},
            }
        )
        tick()
    with open(run_dir / BASELINE_FILE, "w", encoding="utf-8") as fh:
        fh.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    return compare(records, rows)


def compare(records: list[dict], baseline_rows: list[dict]) -> dict[str, Any]:
    """Pass rates of both sides on the baseline's cases, with Wilson intervals, and the paired difference."""
    ours_by_key = {r["key"]: r for r in records}
    rows = [r for r in baseline_rows if r["key"] in ours_by_key]
    if not rows:
        return {"cases": 0}
    ours = [bool(ours_by_key[r["key"]]["passed"]) for r in rows]
    theirs = [bool(r["passed"]) for r in rows]
    diff, lo, hi = paired_bootstrap(ours, theirs)
    by_category: dict[str, dict] = {}
    for r, o, t in zip(rows, ours, theirs, strict=True):
        entry = by_category.setdefault(r["category"], {"cases": 0, "ours": 0, "baseline": 0})
        entry["cases"] += 1
        entry["ours"] += o
        entry["baseline"] += t
    return {
        "cases": len(rows),
        "ours": _rate(ours),
        "baseline": _rate(theirs),
        "difference": {"value": round(diff, 4), "ci95": [round(lo, 4), round(hi, 4)]},
        "by_category": by_category,
    }


def _rate(flags: list[bool]) -> dict[str, Any]:
    lo, hi = wilson(sum(flags), len(flags))
    return {"passed": round(sum(flags) / len(flags), 4), "ci95": [round(lo, 4), round(hi, 4)]}


def table(comparison: dict[str, Any]) -> str:
    if not comparison.get("cases"):
        return "baseline: no comparable cases"
    o, b, d = comparison["ours"], comparison["baseline"], comparison["difference"]
    lines = [
        (
            f"Against the plain LangChain recipe, {comparison['cases']} cases without history "
            "(same scorer, same refusal rule):"
        ),
        f"  ours      {o['passed']:.3f}  [{o['ci95'][0]:.3f}, {o['ci95'][1]:.3f}]",
        f"  baseline  {b['passed']:.3f}  [{b['ci95'][0]:.3f}, {b['ci95'][1]:.3f}]",
        f"  ours - baseline  {d['value']:+.3f}  [{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}] (paired bootstrap, 95%)",
    ]
    return "\n".join(lines)
