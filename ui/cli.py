"""`rag serve`: the web chat's command, registered under the `rag.commands` entry points (see pyproject.toml)."""

from __future__ import annotations

import argparse
import sys

from rag.cli import Command, index_option


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="rag serve", description="Start the web chat and the HTTP API.")
    index_option(parser)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument(
        "--api-only",
        action="store_const",
        const=True,
        help="serve the HTTP API (/v1) alone, without the web chat (RAG_API_ONLY=1)",
    )
    args = parser.parse_args(argv)

    import rag
    from ui.serve import check_exposure, launch

    engine = rag.Engine(rag.load_settings(index_dir=getattr(args, "index", None), api_only=args.api_only))
    if not engine.has_index():
        print(f"error: no index at {engine.catalog.ledger.where}; run `rag ingest` first", file=sys.stderr)
        return 3
    check_exposure(engine.settings, args.host)  # before loading anything: a refused exposure fails at once
    print("loading the models…", flush=True)
    engine.warm_up()
    where = f"http://{args.host}:{args.port}"
    print(
        f"HTTP API at {where}/v1" if engine.settings.api_only else f"chat at {where}", "(Ctrl+C stops it)", flush=True
    )
    launch(engine, host=args.host, port=args.port, checked=True)
    return 0


COMMAND = Command(help="start the web chat", main=main)
