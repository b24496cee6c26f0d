"""What a run leaves behind and shows: the result files, a Markdown report with plots, console tables, and run
comparisons.

Functions return text; only evals/cli.py prints."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from evals.summary import HEADLINE, LOWER_IS_BETTER, flatten

log = logging.getLogger(__name__)

CASES_FILE = "cases.jsonl"
SUMMARY_FILE = "summary.json"
REPORT_FILE = "report.md"
_LABELS = dict(HEADLINE)
_SHORT = {  # column heads of the one-line-per-configuration table
    "retrieval.recall@k": "R@k",
    "retrieval.ndcg@k": "nDCG",
    "answers.key_fact_accuracy": "acc",
    "answers.fact_recall": "fact R",
    "answers.similarity": "sim",
    "answers.refusal_precision": "ref P",
    "answers.refusal_recall": "ref R",
    "answers.faithfulness": "faith",
    "answers.faithfulness_raw": "faith raw",
    "citations.recall": "cite R",
    "citations.precision": "cite P",
    "answers.pass_rate": "passed",
    "latency_ms.total.p50": "ms p50",
}
_COUNTS = {"cases", "answerable", "answered", "errors", "false_refusals", "failures", "dropped_sentences"}
_QUALITY = [name for name, _ in HEADLINE if not name.startswith(("latency_ms.", "judge."))]


# ---- files


def write_run(run_dir: Path, records: list[dict], summary: dict[str, Any]) -> list[Path]:
    """Write cases.jsonl, summary.json, the plots and report.md into `run_dir`; return the paths written."""
    run_dir.mkdir(parents=True, exist_ok=True)
    cases = run_dir / CASES_FILE
    with cases.open("w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    (run_dir / SUMMARY_FILE).write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    plots = _run_plots(run_dir, records, summary)
    (run_dir / REPORT_FILE).write_text(markdown(records, summary, [p.name for p in plots]), encoding="utf-8")
    return [cases, run_dir / SUMMARY_FILE, *plots, run_dir / REPORT_FILE]


def read_run(run_dir: Path) -> tuple[list[dict], dict[str, Any]]:
    """The records and summary of a finished run directory."""
    run_dir = Path(run_dir)
    summary = json.loads((run_dir / SUMMARY_FILE).read_text(encoding="utf-8"))
    with (run_dir / CASES_FILE).open(encoding="utf-8") as f:
        records = [json.loads(line) for line in f if line.strip()]
    return records, summary


# ---- console


def summary_table(summary: dict[str, Any]) -> str:
    """The headline metrics of one run as an aligned two-column table."""
    flat = flatten(summary)
    rows = [(label, _fmt(flat[name], name)) for name, label in HEADLINE if name in flat]
    k = summary["run"].get("k")
    backend = summary["run"].get("settings", {}).get("llm_backend", "?")
    head = f"{summary['run'].get('cases', 0)} cases, k={k}, backend={backend}"
    return head + "\n" + _table(["metric", "value"], rows)


def category_table(summary: dict[str, Any]) -> str:
    rows = [
        (cat, str(c["cases"]), _fmt(c["pass_rate"]), _fmt(c["key_fact_accuracy"]), _fmt(c["hit@k"]), str(c["refused"]))
        for cat, c in summary["by_category"].items()
    ]
    return _table(["category", "cases", "passed", "key facts", "hit@k", "refused"], rows)


def compare(a_dir: Path, b_dir: Path) -> str:
    """Metric deltas from run A to run B, and the cases whose outcome flipped."""
    a_records, a_summary = read_run(a_dir)
    b_records, b_summary = read_run(b_dir)
    fa, fb = flatten(a_summary), flatten(b_summary)
    order = [name for name, _ in HEADLINE] + sorted((set(fa) | set(fb)) - set(_LABELS))
    rows = []
    for name in order:
        if name not in fa and name not in fb:
            continue
        va, vb = fa.get(name), fb.get(name)
        delta = "" if va is None or vb is None else f"{vb - va:+.4g}"
        if va is not None and vb is not None and vb != va:
            better = (vb < va) if name.startswith(LOWER_IS_BETTER) else (vb > va)
            delta += "  better" if better else "  worse"
        rows.append((name, _fmt(va, name), _fmt(vb, name), delta))
    lines = [f"A: {a_dir}", f"B: {b_dir}", _table(["metric", "A", "B", "delta"], rows), ""]

    a_by, b_by = {r["key"]: r for r in a_records}, {r["key"]: r for r in b_records}
    fixed = [k for k in a_by if k in b_by and not a_by[k]["passed"] and b_by[k]["passed"]]
    broken = [k for k in a_by if k in b_by and a_by[k]["passed"] and not b_by[k]["passed"]]
    lines.append(f"flipped: {len(fixed)} now pass, {len(broken)} now fail")
    for label, keys in (("now pass", fixed), ("now fail", broken)):
        for key in keys:
            lines.append(f"  {label}: {key} [{b_by[key]['category']}] {b_by[key]['question']}")
            lines.append(f"      A: {_short(a_by[key]['answer'])}")
            lines.append(f"      B: {_short(b_by[key]['answer'])}")
    hits = [
        k
        for k in a_by
        if k in b_by and _hit(a_by[k]) is not None and _hit(b_by[k]) is not None and _hit(a_by[k]) != _hit(b_by[k])
    ]
    if hits:
        lines.append(
            "retrieval hit@k flipped: " + ", ".join(f"{k} ({'found' if _hit(b_by[k]) else 'lost'})" for k in hits)
        )
    only = sorted(set(a_by) ^ set(b_by))
    if only:
        lines.append(f"in one run only ({len(only)}): " + ", ".join(only))
    return "\n".join(lines)


def matrix_table(rows: list[tuple[str, dict[str, Any]]]) -> str:
    """One line per configuration, the headline quality metrics and the median total latency as columns."""
    columns = _QUALITY + ["latency_ms.total.p50"]
    body = []
    for name, summary in rows:
        flat = flatten(summary)
        body.append([name] + [_fmt(flat.get(c), c) for c in columns])
    table = _table(["config"] + [_SHORT.get(c, _LABELS[c]) for c in columns], body)
    legend = ", ".join(f"{_SHORT[c]} = {_LABELS[c]}" for c in columns if c in _SHORT)
    return f"{table}\n({legend})"


# ---- Markdown report and plots


def markdown(records: list[dict], summary: dict[str, Any], plots: list[str]) -> str:
    run = summary["run"]
    lines = [
        f"# Eval run {run.get('started', '')}",
        "",
        f"- suites: {', '.join(run.get('suites', []))}" + (f" (subset `{run['subset']}`)" if run.get("subset") else ""),
        f"- cases: {run['cases']}; k = {run['k']}",
        f"- settings: {', '.join(f'{k}={v}' for k, v in sorted(run.get('settings', {}).items()))}",
        "",
        "## Metrics",
        "",
        _md_table(
            ["metric", "value"],
            [(label, _fmt(v, name)) for name, label in HEADLINE if (v := flatten(summary).get(name)) is not None],
        ),
        "",
        "## By category",
        "",
        _md_table(
            ["category", "cases", "passed", "accuracy", "hit@k", "refused"],
            [
                (cat, c["cases"], _fmt(c["pass_rate"]), _fmt(c["key_fact_accuracy"]), _fmt(c["hit@k"]), c["refused"])
                for cat, c in summary["by_category"].items()
            ],
        ),
        "",
    ]
    if summary.get("comparison", {}).get("cases"):
        from evals.comparison import table

        lines += ["## Against the plain LangChain recipe", "", "```", table(summary["comparison"]), "```", "",
                  "Its answers: `baseline.jsonl`.", ""]  # fmt: skip
    for name in plots:
        lines += [f"![{name}]({name})", ""]
    failed = [r for r in records if not r["passed"]]
    lines += [f"## Cases not passed ({len(failed)})", ""]
    if failed:
        rows = []
        for r in failed:
            missing = "; ".join(f["variants"][0] for f in r.get("facts", []) if not f["found"])
            reasons = "; ".join(x for x in r.get("reasons", []) if "missing" not in x)
            why = r["error"] or (
                "should refuse"
                if not r["answerable"]
                else "; ".join(x for x in (reasons, f"missing: {missing}" if missing else "") if x)
            )
            rows.append((r["key"], r["category"], _cell(r["question"]), _cell(_short(r["answer"], 160)), _cell(why)))
        lines += [_md_table(["case", "category", "question", "answer", "why"], rows), ""]
    lines += ["Definitions of every metric: evals/README.md.", ""]
    return "\n".join(lines)


def _run_plots(run_dir: Path, records: list[dict], summary: dict[str, Any]) -> list[Path]:
    plt = _pyplot()
    paths = []
    flat = flatten(summary)

    names = [n for n in _QUALITY if flat.get(n) is not None]
    fig, ax = plt.subplots(figsize=(8, 0.35 * len(names) + 1))
    ax.barh([_LABELS[n] for n in names][::-1], [flat[n] for n in names][::-1], color="#4878a8")
    ax.set_xlim(0, 1)
    ax.set_title("Quality metrics")
    for i, n in enumerate(names[::-1]):
        ax.text(min(flat[n] + 0.01, 0.93), i, f"{flat[n]:.2f}", va="center", fontsize=8)
    paths.append(_save(fig, run_dir / "metrics.png", plt))

    cats = list(summary["by_category"])
    fig, ax = plt.subplots(figsize=(8, 3.5))
    xs = range(len(cats))
    width = 0.4
    passed = [summary["by_category"][c]["pass_rate"] or 0 for c in cats]
    hits = [summary["by_category"][c]["hit@k"] or 0 for c in cats]
    ax.bar([x - width / 2 for x in xs], passed, width, label="cases passed", color="#4878a8")
    ax.bar([x + width / 2 for x in xs], hits, width, label="retrieval hit@k", color="#e49444")
    ax.set_xticks(list(xs), cats, rotation=20, ha="right")
    ax.set_ylim(0, 1.05)
    ax.set_title("By category")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    paths.append(_save(fig, run_dir / "categories.png", plt))

    stages = [("retrieve", "retrieve_ms"), ("first token", "first_token_ms"), ("total", "total_ms")]
    data = [[r["timings"][key] for r in records if key in (r.get("timings") or {})] for _, key in stages]
    if any(data):
        fig, ax = plt.subplots(figsize=(8, 3))
        ax.boxplot([d or [0] for d in data], vert=False, tick_labels=[s for s, _ in stages])
        ax.set_xlabel("milliseconds")
        ax.set_title("Latency per stage")
        paths.append(_save(fig, run_dir / "latency.png", plt))
    return paths


def matrix_plot(path: Path, rows: list[tuple[str, dict[str, Any]]]) -> Path:
    """Grouped bars: a few headline metrics for every configuration."""
    plt = _pyplot()
    metrics = [
        "retrieval.hit@k",
        "retrieval.mrr",
        "answers.key_fact_accuracy",
        "answers.refusal_recall",
        "citations.recall",
    ]
    fig, ax = plt.subplots(figsize=(max(8, 1.3 * len(rows)), 4))
    width = 0.8 / len(metrics)
    for i, m in enumerate(metrics):
        values = [flatten(s).get(m) or 0 for _, s in rows]
        ax.bar([x + (i - len(metrics) / 2 + 0.5) * width for x in range(len(rows))], values, width, label=_LABELS[m])
    ax.set_xticks(range(len(rows)), [name for name, _ in rows], rotation=20, ha="right")
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.set_title("Ablations")
    return _save(fig, path, plt)


def matrix_markdown(rows: list[tuple[str, dict[str, Any]]], descriptions: dict[str, str], plot: str | None) -> str:
    columns = _QUALITY + ["latency_ms.total.p50"]
    body = [[f"`{name}`"] + [_fmt(flatten(s).get(c), c) for c in columns] for name, s in rows]
    lines = ["# Ablation matrix", "", _md_table(["config"] + [_LABELS[c] for c in columns], body), ""]
    lines += [f"- `{name}`: {descriptions.get(name, '')}" for name, _ in rows]
    if plot:
        lines += ["", f"![{plot}]({plot})"]
    return "\n".join(lines) + "\n"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path, plt) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ---- formatting


def _fmt(value: float | None, name: str = "") -> str:
    if value is None:
        return "-"
    if name.startswith("latency_ms."):
        return f"{value:.0f}"
    if name.rsplit(".", 1)[-1] in _COUNTS:
        return f"{value:.0f}"
    return f"{value:.3f}"


def _table(header: list[str], rows: list) -> str:
    rows = [[str(c) for c in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]

    def fmt(cells: list[str]) -> str:
        return "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    return "\n".join([fmt(header), "  ".join("-" * w for w in widths), *(fmt(r) for r in rows)])


def _md_table(header: list[str], rows: list) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _short(text: str, n: int = 120) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= n else text[: n - 1] + "…"


def _hit(record: dict) -> float | None:
    return (record.get("retrieval") or {}).get("hit@k")
