"""How far the support heuristic (evals.metrics.supports) agrees with people: hand-labelled (claim, passage) pairs in
evals/suites/support_pairs.jsonl, each `supported`, `contradicted` or `unsupported`. No NLI or cross-encoder model ships
in a package this project can install, so support is heuristic; this says how good the heuristic is."""

from __future__ import annotations

import hashlib
import json
import re
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from evals import metrics

PAIRS = Path(__file__).parent / "suites" / "support_pairs.jsonl"
_SENTENCE = re.compile(r"(?<=[.!?])\s+")


def load(path: Path = PAIRS) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


def split_of(pair: dict) -> str:
    """The same fixed rule as the suites: tune on dev pairs, report test pairs."""
    return ("dev", "test")[hashlib.sha256(f"support_pairs/{pair['id']}".encode()).digest()[0] % 2]


def agreement(pairs: list[dict], embedder: Any, check: Callable[[str, str], bool] | None = None) -> dict[str, Any]:
    """Accuracy, and precision/recall of `supported`, of the heuristic against the labels, by split and by kind; with
    `check` (the library's citation check, `rag.claim_stands`), the same for it under "citation_check"."""
    rows = []
    for p in pairs:
        sentences = [s for s in _SENTENCE.split(p["passage"]) if s.strip()]
        vectors = embedder.embed_documents([p["claim"], *sentences])
        similarity = max(metrics.cosine(vectors[0], v) for v in vectors[1:])
        rows.append((p, metrics.supports(p["claim"], p["passage"], similarity)))
    out: dict[str, Any] = {"pairs": len(rows), "all": _scores(rows)}
    if check is not None:
        checked = [(p, check(p["claim"], p["passage"])) for p in pairs]
        out["citation_check"] = {
            "all": _scores(checked),
            "test": _scores([r for r in checked if split_of(r[0]) == "test"]),
        }
        out["citation_check"]["contradicted_kept"] = sum(x for p, x in checked if p["label"] == "contradicted")
        out["citation_check"]["contradicted"] = sum(p["label"] == "contradicted" for p in pairs)
    for split in ("dev", "test"):
        out[split] = _scores([r for r in rows if split_of(r[0]) == split])
    kinds: dict[str, list] = defaultdict(list)
    for r in rows:
        kinds[r[0]["kind"]].append(r)
    out["by_kind"] = {
        k: {"pairs": len(v), "agree": sum(pred == (p["label"] == "supported") for p, pred in v)}
        for k, v in sorted(kinds.items())
    }
    return out


def _scores(rows: list[tuple[dict, bool]]) -> dict[str, float | int]:
    gold = [p["label"] == "supported" for p, _ in rows]
    pred = [x for _, x in rows]
    tp = sum(g and x for g, x in zip(gold, pred, strict=True))
    return {
        "pairs": len(rows),
        "accuracy": round(sum(g == x for g, x in zip(gold, pred, strict=True)) / len(rows), 3) if rows else 0.0,
        "precision": round(tp / max(1, sum(pred)), 3),
        "recall": round(tp / max(1, sum(gold)), 3),
    }


def table(result: dict[str, Any]) -> str:
    lines = [
        f"support heuristic vs hand labels ({result['pairs']} pairs): accuracy / precision / recall of 'supported'"
    ]
    for split in ("all", "dev", "test"):
        s = result[split]
        lines.append(
            f"  {split:5} {s['pairs']:4} pairs  {s['accuracy']:.3f} / {s['precision']:.3f} / {s['recall']:.3f}"
        )
    lines.append("  by kind: " + ", ".join(f"{k} {v['agree']}/{v['pairs']}" for k, v in result["by_kind"].items()))
    if "citation_check" in result:
        c = result["citation_check"]
        lines.append("the answers' citation check (rag.claim_stands) vs the same labels:")
        for split in ("all", "test"):
            lines.append(
                f"  {split:5} {c[split]['pairs']:4} pairs  "
                f"{c[split]['accuracy']:.3f} / {c[split]['precision']:.3f} / {c[split]['recall']:.3f}"
            )
        lines.append(f"  contradicted claims it keeps: {c['contradicted_kept']} of {c['contradicted']}")
    return "\n".join(lines)
