"""The quality gate: checked-in thresholds per answering backend and scope (a subset name, or `full`), compared with
a run."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evals.report import CASES_FILE
from evals.summary import flatten

THRESHOLDS = Path(__file__).parent / "thresholds.json"


class GateError(ValueError):
    """No thresholds for what was asked, or a malformed thresholds file."""


@dataclass(frozen=True)
class Check:
    metric: str
    value: float | None
    bound: float
    kind: str  # "min" or "max"

    @property
    def ok(self) -> bool:
        if self.value is None:
            return False
        return self.value >= self.bound if self.kind == "min" else self.value <= self.bound

    def line(self) -> str:
        op = ">=" if self.kind == "min" else "<="
        shown = "missing" if self.value is None else f"{self.value:.4g}"
        return f"{'ok  ' if self.ok else 'FAIL'} {self.metric} = {shown} (needs {op} {self.bound:g})"


def thresholds_for(backend: str, scope: str, path: Path = THRESHOLDS) -> dict[str, Any]:
    """The `{metric: bound}` table for one backend and scope; a bound is a minimum, `{"max": v}`, or null (not gated
    yet)."""
    try:
        table = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise GateError(f"cannot read thresholds {path}: {exc}") from None
    try:
        return table[backend][scope]
    except (KeyError, TypeError):
        have = [
            f"{b}/{s}"
            for b, scopes in table.items()
            if not b.startswith("_") and isinstance(scopes, dict)
            for s in scopes
        ]
        raise GateError(
            f"no thresholds for backend {backend!r} and scope {scope!r} in {path}; have: {', '.join(have)}"
        ) from None


def check(summary: dict[str, Any], bounds: dict[str, Any]) -> tuple[list[Check], list[str]]:
    """The checks of every bound that is set, and the names of the metrics whose bound is still null."""
    flat = flatten(summary)
    checks, unset = [], []
    for metric, bound in bounds.items():
        if metric == FLIPS:
            continue
        if bound is None:
            unset.append(metric)
            continue
        if isinstance(bound, dict):
            if set(bound) not in ({"min"}, {"max"}):
                raise GateError(f"threshold for {metric} must be a number, {{'min': v}}, {{'max': v}} or null")
            ((kind, value),) = bound.items()
            if value is None:
                unset.append(metric)
                continue
        else:
            kind, value = "min", bound
        checks.append(Check(metric, flat.get(metric), float(value), kind))
    return checks, unset


# The metrics the gate checks, each with the count it is a share of: a bound sits one such case below the worst run.
GATED = {
    "retrieval.hit@k": ("retrieval", "cases"),
    "retrieval.mrr": ("retrieval", "cases"),
    "answers.key_fact_accuracy": ("answers", "answerable"),
    "answers.refusal_recall": ("answers", None),  # the unanswerable cases: cases - answerable
    "answers.refusal_precision": ("answers", None),
    "answers.faithfulness": ("answers", "answered"),
    "citations.recall": ("answers", "answered"),
    "citations.precision": ("answers", "answered"),
    "answers.pass_rate": ("answers", "cases"),
}


def bounds_from(summaries: list[dict[str, Any]]) -> dict[str, float]:
    """Minimum bounds from at least three measured runs: each metric's worst value, less one case's worth of it,
    rounded down to two decimals (so one case flipping on another machine does not fail the build)."""
    import math

    if len(summaries) < 3:
        raise GateError(f"bounds need at least three measured runs, got {len(summaries)}")
    out = {}
    for metric, (section, count) in GATED.items():
        values = [flatten(s).get(metric) for s in summaries]
        if any(v is None for v in values):
            continue
        counts = [s[section][count] if count else s["answers"]["cases"] - s["answers"]["answerable"] for s in summaries]
        step = 1 / max(1, min(counts))
        out[metric] = max(0.0, math.floor((min(values) - step) * 100) / 100)
    return out


# A flip list: the cases a stored run passed. A later run may fail at most `allowed` of them (a slow model's full
# suite is too long to measure three times; one stored run and a flip count bound it instead).
FLIPS = "flips"


def flip_check(records: list[dict[str, Any]], bounds: dict[str, Any]) -> Check | None:
    """The flip-list check of a scope that has one: how many cases the stored run passed now fail."""
    flips = bounds.get(FLIPS)
    if not flips:
        return None
    now = {r["key"]: bool(r.get("passed")) for r in records}
    lost = [k for k in flips["passed"] if k in now and not now[k]]
    return Check(f"cases passed in run {flips['run']} that now fail", float(len(lost)), float(flips["allowed"]), "max")


def flips_from(run: Path, allowed: int) -> dict[str, Any]:
    """The flip list of one measured run (its cases.jsonl)."""
    records = [json.loads(line) for line in (run / CASES_FILE).read_text(encoding="utf-8").splitlines() if line.strip()]
    return {"run": run.name, "passed": sorted(r["key"] for r in records if r.get("passed")), "allowed": allowed}


def main(argv: list[str] | None = None) -> int:
    """`python -m evals.gate BACKEND SCOPE RUN_DIR RUN_DIR RUN_DIR ...`: write the bounds of one backend and scope;
    `python -m evals.gate --flips N BACKEND SCOPE RUN_DIR`: store one run's passed cases, of which N may flip."""
    import sys
    from datetime import UTC, datetime

    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["--flips"] and len(args) == 5 and args[1].isdigit():
        backend, scope, run = args[2], args[3], Path(args[4])
        table = json.loads(THRESHOLDS.read_text(encoding="utf-8"))
        table.setdefault(backend, {}).setdefault(scope, {})[FLIPS] = flips_from(run, int(args[1]))
        THRESHOLDS.write_text(json.dumps(table, indent=2) + "\n", encoding="utf-8")
        print(
            f"{backend}/{scope}: {len(table[backend][scope][FLIPS]['passed'])} passed cases of run {run.name}, "
            f"{args[1]} may flip"
        )
        return 0
    if len(args) < 5:
        print("usage: python -m evals.gate BACKEND SCOPE RUN_DIR RUN_DIR RUN_DIR [...]", file=sys.stderr)
        print("       python -m evals.gate --flips N BACKEND SCOPE RUN_DIR", file=sys.stderr)
        return 2
    backend, scope, runs = args[0], args[1], [Path(a) for a in args[2:]]
    summaries = [json.loads((r / "summary.json").read_text(encoding="utf-8")) for r in runs]
    table = json.loads(THRESHOLDS.read_text(encoding="utf-8"))
    flips = table.get(backend, {}).get(scope, {}).get(FLIPS)
    table.setdefault(backend, {})[scope] = bounds_from(summaries) | ({FLIPS: flips} if flips else {})
    table.setdefault("_measured", {}).setdefault(backend, {})[scope] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "runs": [r.name for r in runs],
        "cases": summaries[0]["run"]["cases"],
        "worst": {m: min(flatten(s).get(m) or 0 for s in summaries) for m in GATED},
    }
    THRESHOLDS.write_text(json.dumps(table, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(table[backend][scope], indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
