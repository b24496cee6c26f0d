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
