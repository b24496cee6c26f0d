"""Aggregate per-case records into the run summary, and flatten it into `section.metric` names for gates and
comparisons."""

from __future__ import annotations

from collections import Counter
from typing import Any

from evals.metrics import mean, percentile, refusal_precision_recall

HEADLINE = (  # (flattened name, label), in the order tables show them
    ("retrieval.hit@1", "hit@1"),
    ("retrieval.hit@k", "hit@k"),
    ("retrieval.recall@k", "recall@k"),
    ("retrieval.mrr", "MRR"),
    ("retrieval.ndcg@k", "nDCG@k"),
    ("answers.key_fact_accuracy", "answer accuracy (strict)"),
    ("answers.fact_recall", "fact recall"),
    ("answers.similarity", "similarity to reference"),
    ("answers.refusal_precision", "refusal precision"),
    ("answers.refusal_recall", "refusal recall"),
    ("answers.faithfulness", "faithfulness (shown answer)"),
    ("answers.faithfulness_raw", "faithfulness (raw generation)"),
    ("citations.recall", "ALCE citation recall"),
    ("citations.precision", "ALCE citation precision"),
    ("citations.evidence_recall", "evidence recall"),
    ("answers.pass_rate", "cases passed"),
    ("latency_ms.retrieve.p50", "retrieval ms p50"),
    ("latency_ms.retrieve.p95", "retrieval ms p95"),
    ("latency_ms.first_token.p50", "first token ms p50"),
    ("latency_ms.first_token.p95", "first token ms p95"),
    ("latency_ms.total.p50", "total ms p50"),
    ("latency_ms.total.p95", "total ms p95"),
    ("judge.correct", "judge: correct"),
    ("judge.faithful", "judge: faithful"),
)
LOWER_IS_BETTER = ("latency_ms.",)


def summarize(records: list[dict], k: int, run: dict[str, Any] | None = None) -> dict[str, Any]:
    """The summary of one run: retrieval, answers, citations, latency (and the judge when it ran), overall and by
    category."""
    out: dict[str, Any] = {"run": dict(run or {}, cases=len(records), k=k)}
    out.update(_sections(records, k))
    out["by_category"] = {cat: _category(records, cat) for cat in sorted({r["category"] for r in records})}
    return out


def flatten(summary: dict[str, Any]) -> dict[str, float]:
    """Numeric metrics as `section.metric` (and `latency_ms.stage.p50`); run facts and categories left out."""
    flat: dict[str, float] = {}

    def walk(prefix: str, node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(f"{prefix}.{key}" if prefix else key, value)
        elif isinstance(node, int | float) and not isinstance(node, bool):
            flat[prefix] = float(node)

    for section in ("retrieval", "answers", "citations", "latency_ms", "judge"):
        if section in summary:
            walk(section, summary[section])
    return flat


def _sections(records: list[dict], k: int) -> dict[str, Any]:
    answerable = [r for r in records if r["answerable"]]
    answered = [r for r in records if not r.get("refused") and not r.get("error")]
    generated = [r for r in records if r.get("faithfulness_raw") is not None]
    scored = [r["retrieval"] for r in answerable if r.get("retrieval")]
    precision, recall = refusal_precision_recall(
        [bool(r.get("refused")) for r in records], [r["answerable"] for r in records]
    )
    timings = [r.get("timings") or {} for r in records]  # errored cases too: a timeout is slow, not absent
    out: dict[str, Any] = {
        "retrieval": {"cases": len(scored)}
        | {m: _round(mean(s[m] for s in scored)) for m in ("hit@1", "hit@k", "recall@k", "mrr", "ndcg@k")},
        "answers": {
            "cases": len(records),
            "answerable": len(answerable),
            "answered": len(answered),
            "errors": sum(1 for r in records if r.get("error")),
            "key_fact_accuracy": _round(mean(r["key_facts"] for r in answerable)),
            "fact_recall": _round(mean(r["fact_recall"] for r in answerable)),
            "similarity": _round(mean(r["similarity"] for r in answerable)),
            "refusal_precision": _round(precision),
            "refusal_recall": _round(recall),
            "false_refusals": sum(1 for r in answerable if r.get("refused")),
            "faithfulness": _round(mean(r["faithfulness"] for r in answered)),
            "faithfulness_raw": _round(mean(r["faithfulness_raw"] for r in generated)),
            "dropped_sentences": sum(len(r.get("dropped") or []) for r in records),
            "pass_rate": _round(mean(r["passed"] for r in records)),
        },
        "citations": {
            "recall": _round(mean(r["citation_recall"] for r in answered)),
            "precision": _round(mean(r["citation_precision"] for r in answered)),
            "evidence_recall": _round(mean(r.get("evidence_recall") for r in answerable)),
        },
        "latency_ms": {
            stage: {
                "p50": _round(percentile(vals, 50), 1),
                "p95": _round(percentile(vals, 95), 1),
                "max": _round(max(vals, default=None), 1),
            }
            for stage, key in (("retrieve", "retrieve_ms"), ("first_token", "first_token_ms"), ("total", "total_ms"))
            for vals in [[t[key] for t in timings if key in t]]
        },
    }
    read = [t for t in timings if t.get("prompt_tokens")]
    if read:  # the runtime's own figures: how much prompt each answer read, and how fast this machine reads it
        out["prompt"] = {
            "answers": len(read),
            "tokens_p50": _round(percentile([t["prompt_tokens"] for t in read], 50), 1),
            "tokens_p95": _round(percentile([t["prompt_tokens"] for t in read], 95), 1),
            "cached_tokens_p50": _round(percentile([t.get("cached_tokens", 0) for t in read], 50), 1),
            "ms_per_token_p50": _round(
                percentile([t["prompt_read_ms"] / t["prompt_tokens"] for t in read if "prompt_read_ms" in t], 50), 2
            ),
        }
    judged = [r["judge"] for r in records if r.get("judge")]
    if judged:
        out["judge"] = {
            "cases": len(judged),
            "correct": _round(mean(j.get("correct") for j in judged)),
            "faithful": _round(mean(j.get("faithful") for j in judged)),
            "failures": sum(1 for j in judged if j.get("error")),
        }
    return out


def _category(records: list[dict], category: str) -> dict[str, Any]:
    mine = [r for r in records if r["category"] == category]
    answerable = [r for r in mine if r["answerable"]]
    scored = [r["retrieval"] for r in answerable if r.get("retrieval")]
    return {
        "cases": len(mine),
        "pass_rate": _round(mean(r["passed"] for r in mine)),
        "key_fact_accuracy": _round(mean(r["key_facts"] for r in answerable)),
        "hit@k": _round(mean(s["hit@k"] for s in scored)),
        "refused": sum(1 for r in mine if r.get("refused")),
        "outcomes": dict(Counter(_outcome(r) for r in mine)),
    }


def _outcome(record: dict) -> str:
    if record.get("error"):
        return "error"
    if record["answerable"]:
        return "refused" if record.get("refused") else ("right" if record.get("key_facts") else "facts missing")
    return "refused" if record.get("refused") else "answered (should refuse)"


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)
