"""The quality gate: checked-in thresholds per answering backend and scope (a subset name, or `full`), compared with a run."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
    """The `{metric: bound}` table for one backend and scope; a bound is a minimum, `{"max": v}`, or null (not gated yet)."""
    try:
        table = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise GateError(f"cannot read thresholds {path}: {exc}") from None
    try:
        return table[backend][scope]
    except (KeyError, TypeError):
        have = [f"{b}/{s}" for b, scopes in table.items() if not b.startswith("_") and isinstance(scopes, dict) for s in scopes]
        raise GateError(f"no thresholds for backend {backend!r} and scope {scope!r} in {path}; have: {', '.join(have)}") from None


def check(summary: dict[str, Any], bounds: dict[str, Any]) -> tuple[list[Check], list[str]]:
    """The checks of every bound that is set, and the names of the metrics whose bound is still null."""
    flat = flatten(summary)
    checks, unset = [], []
    for metric, bound in bounds.items():
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


def main(argv: list[str] | None = None) -> int:
    """`python -m evals.gate BACKEND SCOPE RUN_DIR RUN_DIR RUN_DIR ...`: write the bounds of one backend and scope."""
    import sys
    from datetime import UTC, datetime

    args = sys.argv[1:] if argv is None else argv
    if len(args) < 5:
        print("usage: python -m evals.gate BACKEND SCOPE RUN_DIR RUN_DIR RUN_DIR [...]", file=sys.stderr)
        return 2
    backend, scope, runs = args[0], args[1], [Path(a) for a in args[2:]]
    summaries = [json.loads((r / "summary.json").read_text(encoding="utf-8")) for r in runs]
    table = json.loads(THRESHOLDS.read_text(encoding="utf-8"))
    table.setdefault(backend, {})[scope] = bounds_from(summaries)
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
