"""The `rag` command: a thin shell over `rag.Engine`; library errors become one line and an exit code."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from rag.config import load_settings
from rag.errors import RagError

log = logging.getLogger("rag")


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--index", type=Path, metavar="DIR", default=argparse.SUPPRESS, help="index directory (default: RAG_INDEX_DIR or index/)"
    )
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="log debug details to stderr")

    parser = argparse.ArgumentParser(prog="rag", description="Offline question answering over a document corpus.", parents=[common])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("ingest", parents=[common], help="index files (default: the corpus directory)")
    p.add_argument("paths", nargs="*", type=Path, metavar="PATH")
    p.add_argument("--rebuild", action="store_true", help="build a fresh index with the current settings, then switch to it")
    p.add_argument("--if-needed", action="store_true", help="do nothing when an index already exists")

    p = sub.add_parser("search", parents=[common], help="show the chunks that best match a query")
    p.add_argument("query")
    p.add_argument("-k", type=int, default=5, help="number of chunks (default 5)")
    p.add_argument("--json", action="store_true", help="print one JSON object")

    p = sub.add_parser("ask", parents=[common], help="answer a question from the index, with citations")
    p.add_argument("question")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--history", type=Path, metavar="FILE", help="JSON list of [user, assistant] pairs (earlier turns)")
    p.add_argument("--backend", help="local, openai or extractive (default: RAG_LLM_BACKEND or local)")
    p.add_argument("-k", type=int, help="passages to retrieve")

    p = sub.add_parser("serve", parents=[common], help="start the web chat")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=7860)

    sub.add_parser("eval", help="run the evaluation suites (`rag eval --help`)")
    sub.add_parser("config", parents=[common], help="print the resolved settings")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["eval"]:  # the evaluation shell has its own options (see evals/README.md)
        from evals.cli import main as eval_main

        return eval_main(argv[1:])
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("bm25s").setLevel(logging.WARNING)
    log.setLevel(logging.DEBUG if getattr(args, "verbose", False) else logging.INFO)
    try:
        return _run(args)
    except RagError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _run(args: argparse.Namespace) -> int:
    from rag.engine import Engine

    settings = load_settings(index_dir=getattr(args, "index", None))
    if args.command == "config":
        print(json.dumps(settings.model_dump(mode="json") | {"record_url": settings.record_url}, indent=2))
        return 0
    engine = Engine(settings)
    if args.command == "ingest":
        return _ingest(engine, args)
    if args.command == "search":
        if args.k < 1 or args.k > 100:
            print("error: -k must be between 1 and 100", file=sys.stderr)
            return 2
        hits = engine.search(args.query, k=args.k)
        if args.json:
            print(json.dumps({"query": args.query, "hits": [h.to_dict() for h in hits]}, ensure_ascii=False))
        else:
            for n, h in enumerate(hits, 1):
                print(f"[{n}] {h.score:.3f}  {h.title} ({h.source}, chars {h.start}-{h.end})")
                print("    " + h.text.replace("\n", " ")[:300])
        return 0
    if args.command == "ask":
        return _ask(engine, args)
    if args.command == "serve":
        # The web UI is a shell of its own; the CLI only starts it.
        from ui.app import launch

        if not engine.has_index():
            print(f"error: no index at {settings.index_dir}; run `rag ingest` first", file=sys.stderr)
            return 3
        print("loading the models…", flush=True)
        engine.warm_up()
        print(f"chat at http://{args.host}:{args.port} (Ctrl+C stops it)", flush=True)
        launch(engine, host=args.host, port=args.port)
        return 0
    raise AssertionError(args.command)


def _ask(engine, args: argparse.Namespace) -> int:
    from rag.config import QueryParams

    history = _read_history(args.history) if args.history else []
    try:
        params = QueryParams(k=args.k, backend=args.backend)
    except ValueError as exc:
        print(f"error: {str(exc).splitlines()[-1]}", file=sys.stderr)
        return 2
    result = engine.ask(args.question, history, params)
    if args.json:
        print(json.dumps(result.to_dict(), ensure_ascii=False))
        return 0
    print(result.answer)
    for c in result.citations:
        print(f"  [{c.n}] {c.title} ({c.source}, chars {c.start}-{c.end}): “{c.quote}”")
    return 0


def _read_history(path: Path) -> list[tuple[str, str]]:
    from rag.errors import InputError

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, list) or not all(isinstance(t, list) and len(t) == 2 and all(isinstance(x, str) for x in t) for t in data):
            raise ValueError("expected a list of [user, assistant] string pairs")
    except (OSError, ValueError) as exc:
        raise InputError(f"--history {path}: {exc}; give a JSON list of [user, assistant] pairs") from None
    return [(u, a) for u, a in data]


def _ingest(engine, args: argparse.Namespace) -> int:
    from rag.store import read_manifest

    if args.if_needed and not args.rebuild and read_manifest(engine.settings.index_dir) is not None:
        print(f"index at {engine.settings.index_dir} exists; skipping ingestion (run `rag ingest` to update it)")
        return 0
    report = engine.ingest(args.paths or None, rebuild=args.rebuild, progress=sys.stderr.isatty())
    for src, reason in sorted(report.failed.items()):
        print(f"failed: {src}: {reason}", file=sys.stderr)
    for src, other in sorted(report.duplicates.items()):
        print(f"duplicate: {src} has the same content as {other}; stored once", file=sys.stderr)
    print(report.summary())
    return 0 if report.ok else 1
