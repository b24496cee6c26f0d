"""The settings table of docs/configuration.md, generated from `rag.config.Settings` so it cannot drift.

    .venv/bin/python docs/settings_table.py           # print the table
    .venv/bin/python docs/settings_table.py --write   # rewrite the table in docs/configuration.md

tests/test_docs.py fails when the page's table is not what `table()` renders (a setting added, renamed or changed
without running `--write`).
"""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import SecretStr

from rag.config import Settings

PAGE = Path(__file__).resolve().parent / "configuration.md"
START, END = "<!-- settings-table:start -->", "<!-- settings-table:end -->"

# What a setting is for, where rag/config.py gives it no description of its own (its description wins once it has one).
NOTES = {
    "corpus_dir": "the folder `rag ingest` reads by default",
    "index_dir": "the embedded index (Chroma, records, manifest, lexical index, lock); stays empty on shared services",
    "collection_prefix": (
        "names the index's collections and its lock; "
        "indexes with other prefixes can share one Chroma server and database"
    ),
    "embed_backend": "the embedding backend (one today)",
    "embed_batch_size": "texts embedded at once",
    "embed_device": "the PyTorch device of the embedding model",
    "tokenizer": "the tiktoken encoding that counts chunk and context tokens",
    "retrieve_mode": "hybrid: dense and BM25 fused by reciprocal rank; dense or lexical alone",
    "retrieve_mmr": "re-rank the fused candidates by maximal marginal relevance",
    "llm_backend": (
        "local: the packaged model on llama.cpp; openai: any OpenAI-compatible server; "
        "extractive: no model, the best-supported sentences"
    ),
    "llm_threads": "CPU threads of the local model; unset = llama.cpp's default",
    "llm_max_tokens": "answer length limit in tokens",
    "llm_temperature": "sampling temperature; 0 = the same answer every time",
    "llm_timeout_s": "time limit of one model call (condensing, answering)",
    "openai_base_url": "the OpenAI-compatible server of the openai backend, e.g. http://host:8080/v1",
    "openai_model": "the model name sent to that server",
    "openai_api_key": "the key sent to that server",
    "max_question_chars": "longest question accepted (chat, API, `rag ask`); longer is refused before any model work",
    "feedback_file": "where the chat's thumbs up/down are appended (JSON lines)",
    "ui_queue_size": "questions waiting for an answer slot (chat and API together); more get 503 with Retry-After",
    "max_file_mb": "largest file ingested or uploaded",
}


def _code(value: Any) -> str:
    return f"`{value}`"


def _kind(annotation: Any) -> tuple[str, bool]:
    """A type in words, and whether it is a secret; `X | None` reads as X (its default says unset)."""
    if get_origin(annotation) in (Union, types.UnionType):
        inner = [a for a in get_args(annotation) if a is not type(None)]
        if len(inner) == 1:
            return _kind(inner[0])
    if get_origin(annotation) is Literal:
        return "one of " + ", ".join(_code(v) for v in get_args(annotation)), False
    if annotation is SecretStr:
        return "secret", True
    words = {bool: "boolean", int: "integer", float: "number", str: "text", Path: "path"}
    return words.get(annotation, getattr(annotation, "__name__", str(annotation))), False


def _bounds(metadata: list) -> str:
    signs = {"ge": "≥", "gt": ">", "le": "≤", "lt": "<", "min_length": "length ≥", "max_length": "length ≤"}
    found = []
    for item in metadata:
        for attr, sign in signs.items():
            value = getattr(item, attr, None)
            if value is not None:
                found.append(f"{sign} {value:,}" if isinstance(value, int) else f"{sign} {value:g}")
    return ", ".join(found)


def _default(value: Any, secret: bool) -> str:
    if value is None or secret:
        return "unset"
    if isinstance(value, bool):
        return _code(str(value).lower())
    if isinstance(value, float):
        return _code(f"{value:g}")
    return _code(value)


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def table() -> str:
    """Every field of `Settings` as one Markdown table row, in the order rag/config.py declares them."""
    rows = ["| variable | type | default | what it does |", "| --- | --- | --- | --- |"]
    for name, field in Settings.model_fields.items():
        kind, secret = _kind(field.annotation)
        bounds = _bounds(field.metadata)
        if bounds:
            kind = f"{kind}, {bounds}"
        what = field.description or NOTES.get(name, "")
        if secret:
            what += "; never printed (`rag config` shows `**********`)"
        rows.append(f"| `RAG_{name.upper()}` | {_cell(kind)} | {_default(field.default, secret)} | {_cell(what)} |")
    return "\n".join(rows) + "\n"


def block(page: str) -> str:
    """The text between the page's markers."""
    head, start, rest = page.partition(START)
    body, end, _ = rest.partition(END)
    if not (start and end):
        raise ValueError(f"{PAGE.name} lacks the markers {START} ... {END}")
    return body.strip("\n") + "\n"


def write() -> bool:
    """Rewrite the page's table; True when it changed."""
    page = PAGE.read_text(encoding="utf-8")
    block(page)  # the markers are there
    head, _, rest = page.partition(START)
    _, _, tail = rest.partition(END)
    new = f"{head}{START}\n{table()}{END}{tail}"
    PAGE.write_text(new, encoding="utf-8")
    return new != page


def main(argv: list[str]) -> int:
    if argv == ["--write"]:
        print(f"{PAGE.name}: {'rewritten' if write() else 'already current'}")
        return 0
    if argv:
        print("usage: settings_table.py [--write]", file=sys.stderr)
        return 2
    print(table(), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
