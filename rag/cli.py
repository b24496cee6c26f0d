"""The `rag` command: a thin shell over `rag.Engine`; library errors become one line and an exit code.

Other shells add their own sub-commands (`rag serve` from ui/, `rag eval` from evals/) by registering a `Command`
under the `rag.commands` entry-point group (see pyproject.toml); the library never imports them.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rag.config import Settings, load_settings
from rag.errors import InputError, RagError

log = logging.getLogger("rag")
COMMANDS_GROUP = "rag.commands"


@dataclass(frozen=True)
class Command:
    """A sub-command another package registers: `main(argv)` parses its own options and returns the exit code."""

    help: str
    main: Callable[[list[str]], int]


def registered() -> dict[str, Command]:
    """The sub-commands registered under `rag.commands`, by name (importing each is cheap: heavy parts load in
    `main`)."""
    from importlib.metadata import entry_points

    found = {}
    for ep in entry_points(group=COMMANDS_GROUP):
        try:
            found[ep.name] = ep.load()
        except ImportError as exc:  # a shell whose package is missing: the rest of the CLI still works
            log.debug("command %s unavailable: %s", ep.name, exc)
    return found


def index_option(parser: argparse.ArgumentParser) -> None:
    """`--index DIR` and `-v`, which every sub-command takes."""
    parser.add_argument(
        "--index",
        type=Path,
        metavar="DIR",
        default=argparse.SUPPRESS,
        help="index directory (default: RAG_INDEX_DIR or index/)",
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="log debug details to stderr"
    )


def _parser(plugins: dict[str, Command]) -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    index_option(common)

    parser = argparse.ArgumentParser(
        prog="rag", description="Offline question answering over a document corpus.", parents=[common]
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("ingest", parents=[common], help="index files (default: the corpus directory)")
    p.add_argument("paths", nargs="*", type=Path, metavar="PATH")
    p.add_argument(
        "--rebuild", action="store_true", help="build a fresh index with the current settings, then switch to it"
    )
    p.add_argument("--if-needed", action="store_true", help="do nothing when an index already exists")

    p = sub.add_parser("search", parents=[common], help="show the chunks that best match a query")
    p.add_argument("query")
    p.add_argument("-k", type=int, help="number of chunks (default: RAG_RETRIEVE_K)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument(
        "--source", action="append", metavar="DOC", help="only this document (its source or file name); repeatable"
    )

    p = sub.add_parser("ask", parents=[common], help="answer a question from the index, with citations")
    p.add_argument("question")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--history", type=Path, metavar="FILE", help="JSON list of [user, assistant] pairs (earlier turns)")
    p.add_argument(
        "--backend", help="one of: " + ", ".join(Settings.choices("llm_backend")) + " (default: RAG_LLM_BACKEND)"
    )
    p.add_argument("-k", type=int, help="passages to retrieve")
    p.add_argument(
        "--depth", choices=Settings.choices("depth"), help="context of retrieved passages (default: RAG_DEPTH)"
    )
    p.add_argument(
        "--source",
        action="append",
        metavar="DOC",
        help="answer only from this document (its source or file name); repeatable",
    )
    where = p.add_mutually_exclusive_group()
    where.add_argument(
        "--server",
        metavar="URL",
        help="ask this running `rag serve` (default: RAG_SERVER_URL, or one answering on 127.0.0.1:7860)",
    )
    where.add_argument("--local", action="store_true", help="answer in this process even when a server runs")

    sub.add_parser("config", parents=[common], help="print the resolved settings")
    for name, command in sorted(plugins.items()):
        sub.add_parser(name, help=f"{command.help} (`rag {name} --help`)")
    return parser


def run() -> None:
    """The `rag` command: `main`, then, after a read-only command, an exit that skips tearing down the interpreter
    (Chroma's and ONNX Runtime's modules took 0.2-0.4 s of a 2 s cold `rag search`; nothing is left to write)."""
    code = main()
    try:
        sys.stdout.flush()
    except BrokenPipeError:  # the reader left early (`rag search ... | head`): not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    if sys.argv[1:2] == ["search"]:
        sys.stderr.flush()
        logging.shutdown()
        os._exit(code)
    sys.exit(code)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    plugins = registered()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    log.setLevel(logging.DEBUG if {"-v", "--verbose"} & set(argv) else logging.INFO)
    try:
        if argv[:1] and argv[0] in plugins:  # a registered shell parses its own options
            return plugins[argv[0]].main(argv[1:])
        return _run(_parser(plugins).parse_args(argv))
    except RagError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader of our output left early: stop writing, quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _run(args: argparse.Namespace) -> int:
    from rag.engine import Engine

    settings = load_settings(index_dir=getattr(args, "index", None))
    if args.command == "config":
        resolved = settings.model_dump(mode="json") | {"record_url": settings.record_url}
        engine = Engine(settings)
        if engine.has_index():
            way = engine.way()
            resolved["answering"] = {"way": way.name, "why": way.why}
        print(json.dumps(resolved, indent=2))
        return 0
    if args.command == "ask":
        client = _server(settings, args)
        if client is not None:
            history = _read_history(args.history) if args.history else []
            return _print_answer(client.ask(args.question, history, sources=args.source), args.json)
    engine = Engine(settings)
    if args.command == "ingest":
        return _ingest(engine, args)
    if args.command == "search":
        if args.k is not None and not 1 <= args.k <= 100:
            raise InputError("-k must be between 1 and 100")
        hits = _search(engine, args.query, args.k, args.source)
        if args.json:
            print(json.dumps({"query": args.query, "hits": [h.to_dict() for h in hits]}, ensure_ascii=False))
        else:
            for n, h in enumerate(hits, 1):
                print(f"[{n}] {h.score:.3f}  {h.title} ({h.source}, chars {h.start}-{h.end})")
                print("    " + h.text.replace("\n", " ")[:300])
        return 0
    if args.command == "ask":
        return _ask(engine, args)
    raise AssertionError(args.command)


def _ask(engine, args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from rag.config import QueryParams

    history = _read_history(args.history) if args.history else []
    try:
        params = QueryParams(
            k=args.k, backend=args.backend, sources=tuple(args.source) if args.source else None, depth=args.depth
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        raise InputError(f"--{first['loc'][0]}: {first['msg']}") from None
    # One thread: loading the model holds the interpreter lock, so loading it beside retrieval gains nothing.
    return _print_answer(engine.ask(args.question, history, params), args.json)


def _search(engine, query: str, k: int | None, sources: list[str] | None) -> list:
    open_for_search(engine)
    return engine.search(query, k=k, sources=sources)


def open_for_search(engine) -> None:
    """Open the index and load the query encoder, side by side when the encoder is a cached ONNX copy (a cold
    `rag search` measured ~0.4 s sooner); otherwise the encoder first (its session starts slower once the Chroma
    client runs, and PyTorch is not imported beside other modules). Nothing happens without an index."""
    from rag.store import reaching_services

    reaching_services(_open_for_search)(engine)


def _open_for_search(engine) -> None:
    if not engine.has_index():
        return
    cached = getattr(engine.embedder, "query_encoder_cached", None)
    loading = None
    if cached is not None and cached():
        loading = threading.Thread(
            target=engine.embedder.embed_query, args=("warm up",), name="query-encoder", daemon=True
        )
        loading.start()
    else:
        engine.embedder.embed_query("warm up")
    try:
        _ = engine.lexical  # opens the store too
    finally:
        if loading is not None:
            loading.join()


def _server(settings: Settings, args: argparse.Namespace):
    """The running server `rag ask` should use: the one named (it must answer), else the default address when a server
    answers there and nothing asks for this process's own index or model; None to answer here."""
    from rag.client import DEFAULT_SERVER, Client

    key = settings.server_key.get_secret_value() if settings.server_key else None
    if args.local:
        return None
    named = args.server or settings.server_url
    if named:
        client = Client(named, key)
        if not client.available(timeout=2.0):
            raise InputError(
                f"no rag server answers at {client.base}; start `rag serve`, fix the address, or use --local"
            )
        return client
    if getattr(args, "index", None) or args.backend or args.k:
        return None
    client = Client(DEFAULT_SERVER, key)
    if client.available(timeout=0.3):
        log.info("answering through the server at %s (--local answers here)", client.base)
        return client
    return None


def _print_answer(result, as_json: bool) -> int:
    if as_json:
        print(json.dumps(result.to_dict(), ensure_ascii=False))
        return 0
    print(result.answer)
    for c in result.citations:
        where = f"p. {c.page}, " if c.page else ""
        print(f"  [{c.n}] {c.title} ({c.source}, {where}chars {c.start}-{c.end}): “{c.quote}”")
    return 0


def _read_history(path: Path) -> list[tuple[str, str]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, list) or not all(
            isinstance(t, list) and len(t) == 2 and all(isinstance(x, str) for x in t) for t in data
        ):
            raise ValueError("expected a list of [user, assistant] string pairs")
    except (OSError, ValueError) as exc:
        raise InputError(f"--history {path}: {exc}; give a JSON list of [user, assistant] pairs") from None
    return [(u, a) for u, a in data]


def _ingest(engine, args: argparse.Namespace) -> int:
    if args.if_needed and not args.rebuild and engine.has_index():
        print(f"index at {engine.catalog.ledger.where} exists; skipping ingestion (run `rag ingest` to update it)")
        return 0
    report = engine.ingest(args.paths or None, rebuild=args.rebuild, progress=sys.stderr.isatty())
    for src, reason in sorted(report.failed.items()):
        print(f"failed: {src}: {reason}", file=sys.stderr)
    for src, other in sorted(report.duplicates.items()):
        print(f"duplicate: {src} has the same content as {other}; stored once", file=sys.stderr)
    print(report.summary())
    if report.chunks_total:
        _read_whole(engine)
    return 0 if report.ok else 1


def _read_whole(engine) -> None:
    """After an ingest: the documents read into the model's saved state when they are answered whole."""
    way = engine.way()
    if not way.whole:
        print(f"answers come from {way.name}: {way.why}")
        return
    read = engine.read_corpus(progress=sys.stderr.isatty())
    if read["how"] == "read":
        print(
            f"read the {read['documents']} documents whole (about {read['tokens']:,} tokens) "
            f"in {read['seconds']:.1f} s; saved for later questions"
        )
    else:
        print(
            f"the {read['documents']} documents are read whole (about {read['tokens']:,} tokens; "
            "the saved reading is current)"
        )
