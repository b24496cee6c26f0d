"""`rag eval` / `python -m evals`: run suites, write the results, print the summary; compare runs; run the ablation
matrix; gate."""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from rag.cli import Command

log = logging.getLogger("evals")

DEFAULT_OUT = Path("evals/results")
_RUN_SETTINGS = (
    "llm_backend", "retrieve_mode", "retrieve_k", "retrieve_candidates", "rrf_k", "retrieve_mmr", "context_tokens",
    "context_margin", "condense", "chunk_size", "chunk_overlap", "embed_model", "index_dir", "corpus_dir",
    "llm_model_path", "openai_base_url", "openai_model", "llm_threads",
)  # fmt: skip


def _parser() -> argparse.ArgumentParser:
    from evals.suite import DEFAULT_SUITE

    p = argparse.ArgumentParser(
        prog="rag eval", description="Evaluate retrieval, answers and citations on JSONL suites (see evals/README.md)."
    )
    p.add_argument(
        "--suite",
        action="append",
        type=Path,
        metavar="PATH",
        help=f"a suite file; repeatable (default: {DEFAULT_SUITE.name})",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a setting, e.g. --set llm_backend=extractive",
    )
    p.add_argument(
        "--out", type=Path, metavar="DIR", default=DEFAULT_OUT, help="where run folders go (default: evals/results)"
    )
    p.add_argument("--subset", metavar="NAME", help="only the cases whose `subsets` name this (e.g. ci)")
    p.add_argument(
        "--split", choices=("dev", "test"), help="only the cases of this split (tune on dev, report on test)"
    )
    p.add_argument(
        "--corpus",
        type=Path,
        metavar="SPEC",
        help="answer from the corpus a JSON spec names (e.g. evals/corpora/pydocs.json)",
    )
    p.add_argument(
        "--baseline",
        action="store_true",
        help="also answer every case without history with the plain LangChain recipe, same scorer",
    )
    p.add_argument("--limit", type=int, metavar="N", help="only the first N cases")
    p.add_argument(
        "--compare",
        nargs=2,
        type=Path,
        metavar=("A", "B"),
        help="print metric deltas and flipped cases from run A to run B",
    )
    p.add_argument(
        "--matrix",
        nargs="?",
        const="all",
        metavar="NAMES",
        help="run the ablation configurations (comma-separated names; default all)",
    )
    p.add_argument(
        "--gate", action="store_true", help="exit 1 when a metric is below its threshold in evals/thresholds.json"
    )
    p.add_argument(
        "--thresholds", type=Path, metavar="FILE", help="thresholds file for --gate (default: evals/thresholds.json)"
    )
    p.add_argument(
        "--endpoint",
        metavar="URL",
        help="ask an OpenAI-compatible chat endpoint (a served `rag serve`, or another product) instead of this "
        "process; key: RAG_SERVER_KEY",
    )
    p.add_argument("--endpoint-model", metavar="NAME", help="model name for --endpoint (default: the first it lists)")
    p.add_argument(
        "--judge",
        metavar="URL",
        help="also grade answers with an LLM at this OpenAI-compatible base URL (off by default)",
    )
    p.add_argument(
        "--judge-model",
        default="default",
        metavar="NAME",
        help="model name for --judge (key: the judge_api_key setting)",
    )
    p.add_argument(
        "--support-agreement",
        action="store_true",
        help="print how far the support heuristic agrees with the hand-labelled pairs",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="log debug details to stderr")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    log.setLevel(logging.DEBUG if args.verbose else logging.INFO)
    from evals.gate import GateError
    from evals.suite import SuiteError
    from rag import RagError

    try:
        return _run(args, parser)
    except (RagError, SuiteError, GateError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return getattr(exc, "exit_code", 2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if args.support_agreement:
        return _support_agreement()
    if args.compare:
        return _compare(args.compare, parser)
    _check_flags(args, parser)
    settings = _settings(args, parser)
    paths, cases = _cases(args, parser)
    if args.corpus:
        from evals.corpora import prepare

        settings = prepare(args.corpus, settings, progress=sys.stderr.isatty())
    import rag

    engine = rag.Engine(settings)
    if not engine.has_index():
        print(f"error: no index at {engine.catalog.ledger.where}; run `rag ingest` first", file=sys.stderr)
        return 3
    run_dir = _new_run_dir(args.out)
    meta = _meta(args, paths, settings)
    endpoint = None
    if args.endpoint:
        endpoint = _endpoint(args.endpoint, args.endpoint_model, settings)
        if endpoint is None:
            return 2
        meta["endpoint"] = {"url": endpoint.base, "model": endpoint.model}
    progress = sys.stderr.isatty()
    if args.matrix:
        return _matrix(engine, cases, args.matrix, run_dir, meta, progress)
    return _run_suite(args, engine, cases, run_dir, meta, endpoint, progress)


def _support_agreement() -> int:
    """Print how far the support heuristic agrees with the hand-labelled pairs."""
    import rag
    from evals import support_agreement

    embedder = rag.Engine().embedder

    def stands(claim: str, passage: str) -> bool:
        return rag.claim_stands(claim, passage, embedder)

    print(support_agreement.table(support_agreement.agreement(support_agreement.load(), embedder, stands)))
    return 0


def _compare(dirs: list[Path], parser: argparse.ArgumentParser) -> int:
    """Print the metric deltas and flipped cases from one run folder to the other."""
    from evals.report import compare

    for d in dirs:
        if not (d / "summary.json").is_file():
            parser.error(f"{d} is not a run folder (no summary.json)")
    print(compare(*dirs))
    return 0


def _check_flags(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """Refuse (exit 2, with the usage) flags that do not go together."""
    from evals import suite

    if args.limit is not None and args.limit < 1:
        parser.error("--limit must be at least 1")
    if args.endpoint and (args.gate or args.matrix or args.baseline):
        parser.error("--endpoint scores what another server answers: drop --gate, --matrix and --baseline")
    if args.gate and (args.limit or args.matrix):
        parser.error("--gate compares a whole suite or subset with its thresholds: drop --limit and --matrix")
    if (
        args.gate
        and not args.thresholds
        and any(p.resolve() != suite.DEFAULT_SUITE.resolve() for p in args.suite or [])
    ):
        parser.error("the checked-in thresholds are for the gold suite; give --thresholds FILE for other suites")


def _settings(args: argparse.Namespace, parser: argparse.ArgumentParser):
    """The settings of the run: the environment and config file, then each --set."""
    import rag

    overrides = _overrides(args.set, parser)
    # pinned, so figures repeat on this 2-core machine; --set llm_threads=N to change
    overrides.setdefault("llm_threads", "2")
    if args.endpoint:
        overrides["llm_backend"] = "extractive"  # no model here: the answers come from the endpoint
    return rag.load_settings(**overrides)


def _cases(args: argparse.Namespace, parser: argparse.ArgumentParser) -> tuple[list[Path], list]:
    """The suite files, and their cases in the chosen subset, split and limit (none: exit 2)."""
    from evals import suite

    paths = args.suite or [suite.DEFAULT_SUITE]
    cases = [c for path in paths for c in suite.load(path)]
    cases = suite.select(cases, args.subset, args.limit, args.split)
    if not cases:
        parser.error(f"no cases in subset {args.subset!r} / split {args.split!r}")
    return paths, cases


def _meta(args: argparse.Namespace, paths: list[Path], settings) -> dict:
    """What the run folder records about how the run was made."""
    return {
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "suites": [str(p) for p in paths],
        "subset": args.subset,
        "split": args.split,
        "corpus": str(args.corpus) if args.corpus else None,
        "limit": args.limit,
        "settings": {
            k: str(v) if isinstance(v, Path) else v for k, v in settings.model_dump().items() if k in _RUN_SETTINGS
        },
        "commit": _commit(),
    }


def _endpoint(url: str, model: str | None, settings):
    """A client of the OpenAI-compatible API at `url`, or None (the error printed) when nothing answers there."""
    import rag

    key = settings.server_key.get_secret_value() if settings.server_key else None
    endpoint = rag.Client(url, key, model=model)
    if not endpoint.available(timeout=5):
        print(
            f"error: no OpenAI-compatible API answers at {endpoint.base} (GET /models); "
            "check the URL and RAG_SERVER_KEY",
            file=sys.stderr,
        )
        return None
    return endpoint


def _run_suite(args: argparse.Namespace, engine, cases, run_dir: Path, meta: dict, endpoint, progress: bool) -> int:
    """Answer and score the cases, write the run folder, print the tables, and gate when asked."""
    from evals import report, run
    from evals.summary import summarize

    judge = None
    if args.judge:
        from evals.judge import Judge

        key = engine.settings.judge_api_key or engine.settings.openai_api_key
        judge = Judge(args.judge, args.judge_model, key.get_secret_value() if key else None)
        meta["judge"] = {"url": args.judge, "model": args.judge_model}
    records = run.run(engine, cases, progress=progress, judge=judge, endpoint=endpoint)
    summary = summarize(records, engine.settings.retrieve_k, meta)
    if args.baseline:
        from evals.comparison import run_baseline

        summary["comparison"] = run_baseline(engine, cases, records, run_dir)
    report.write_run(run_dir, records, summary)
    print(report.summary_table(summary))
    print()
    print(report.category_table(summary))
    print()
    if args.baseline:
        from evals.comparison import table

        print(table(summary["comparison"]))
        print()
    backend = engine.settings.llm_backend
    status = _gate(summary, records, backend, args.subset or "full", args.thresholds) if args.gate else 0
    print(f"results: {run_dir} (report: {run_dir / report.REPORT_FILE})")
    return status


def _matrix(engine, cases, names: str, run_dir: Path, meta: dict, progress: bool) -> int:
    from evals import matrix, report
    from evals.summary import summarize

    configs = matrix.pick(names)
    rows: list[tuple[str, dict]] = []

    def done(config: matrix.Config, records: list[dict]) -> None:
        settings = engine.settings.model_copy(update=config.settings)
        run_meta = meta | {"config": config.name, "settings": meta["settings"] | config.settings}
        summary = summarize(records, settings.retrieve_k, run_meta)
        report.write_run(run_dir / config.name, records, summary)
        rows.append((config.name, summary))
        log.info("matrix: %s done (%d/%d)", config.name, len(rows), len(configs))

    matrix.run_matrix(engine, cases, configs, progress=progress, on_done=done)
    plot = report.matrix_plot(run_dir / "matrix.png", rows)
    descriptions = {c.name: c.description for c in configs}
    (run_dir / "matrix.md").write_text(report.matrix_markdown(rows, descriptions, plot.name), encoding="utf-8")
    (run_dir / "matrix.json").write_text(json.dumps({name: s for name, s in rows}, indent=2) + "\n", encoding="utf-8")
    print(report.matrix_table(rows))
    print()
    print(f"results: {run_dir} (report: {run_dir / 'matrix.md'})")
    return 0


def _gate(summary: dict, records: list[dict], backend: str, scope: str, path: Path | None) -> int:
    from evals import gate

    bounds = gate.thresholds_for(backend, scope, path or gate.THRESHOLDS)
    checks, unset = gate.check(summary, bounds)
    flips = gate.flip_check(records, bounds)
    checks += [flips] if flips else []
    print(f"gate {backend}/{scope}:")
    for c in checks:
        print("  " + c.line())
    if unset:
        print(f"  not gated yet (null thresholds): {', '.join(unset)}")
    failed = [c for c in checks if not c.ok]
    print(f"gate: {'FAILED' if failed else 'passed'} ({len(checks) - len(failed)}/{len(checks)} checks)")
    print()
    return 1 if failed else 0


def _overrides(pairs: list[str], parser: argparse.ArgumentParser) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            parser.error(f"--set wants KEY=VALUE, got {pair!r}")
        out[key.strip()] = value.strip()
    return out


def _new_run_dir(root: Path) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    run_dir, n = root / stamp, 1
    while run_dir.exists():
        n += 1
        run_dir = root / f"{stamp}-{n}"
    run_dir.mkdir(parents=True)
    return run_dir


def _commit() -> str | None:
    """The git commit of the working tree (with `+dirty` when it has changes), for telling runs apart."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True, timeout=5
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("+dirty" if dirty else "")


COMMAND = Command(help="run the evaluation suites", main=main)
