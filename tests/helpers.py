"""Helpers shared by test modules, which import them from here and never from each other (the fakes are in fakes.py,
the real servers in servers.py, the generated files in files.py, the fixtures in the conftests)."""

from __future__ import annotations

import json
import os
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

import httpx
import pytest
from pydantic import SecretStr

import rag

from .fakes import ScriptedChatModel
from .servers import free_port, wait_for_port

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "corpus"
SHOTS = ROOT / "tests" / "artifacts"  # screenshots the browser tests take (not committed)

# The app's module (and with it gradio) is imported where an app is served: the conftest imports this module, and
# a run of the library's tests alone need not load gradio.


def missing(what: str, install: str) -> NoReturn:
    """A system package a test needs is not installed: a skip on a developer's machine, a failure in CI (`CI` set,
    as .ci/run does), where it must be there."""
    message = f"{what} is missing: {install} (.ci/run does)"
    if os.environ.get("CI", "").lower() not in ("", "0", "false"):
        pytest.fail(message)
    pytest.skip(message)


# Serving the app.


def serve(engine: rag.Engine, host: str = "127.0.0.1") -> str:
    """Serve `engine`'s app on a free port of `host` (0.0.0.0 too: the tests reach it on 127.0.0.1); its base URL."""
    from ui import serve as ui_serve

    port = free_port()
    ui_serve.launch(engine, host=host, port=port, block=False)
    return f"http://127.0.0.1:{port}/"


@contextmanager
def served_scripted(ready_settings, embedder, tmp_path, **overrides):
    """(engine, url): the app served on the ready index with the scripted model, its conversations in `tmp_path`."""
    from ui import serve as ui_serve

    update = {"llm_backend": "local", "conversations_db_url": f"sqlite:///{tmp_path / 'chats.sqlite'}", **overrides}
    engine = rag.Engine(ready_settings.model_copy(update=update), embedder=embedder, llm=ScriptedChatModel())
    try:
        yield engine, serve(engine)
    finally:
        ui_serve.close_all()


LOGINS = SecretStr("alice:alice-pass-1,bob:bob-pass-2")


@contextmanager
def feedback_app(ready_settings, embedder, tmp_path):
    """start(**overrides) -> (engine, url, the feedback log): the chat with two logins and a small feedback cap."""
    from ui import serve as ui_serve

    def start(**overrides):
        log = tmp_path / "feedback" / "votes.jsonl"
        update = {
            "llm_backend": "local",
            "conversations_db_url": f"sqlite:///{tmp_path / 'chats.sqlite'}",
            "feedback_file": log,
            "ui_auth": LOGINS,
            **overrides,
        }
        engine = rag.Engine(ready_settings.model_copy(update=update), embedder=embedder, llm=ScriptedChatModel())
        port = free_port()
        ui_serve.launch(engine, port=port, block=False)
        wait_for_port(port)
        return engine, f"http://127.0.0.1:{port}/", log

    try:
        yield start
    finally:
        ui_serve.close_all()


# Talking to the served app over HTTP.


def client_from(address: str, url: str, timeout: float = 60) -> httpx.Client:
    """An HTTP client whose requests come from `address` (any of 127.0.0.0/8 reaches the loopback server)."""
    return httpx.Client(base_url=url, timeout=timeout, transport=httpx.HTTPTransport(local_address=address))


@contextmanager
def logged_in(url: str, user: str, password: str) -> Iterator[httpx.Client]:
    """An HTTP client holding `user`'s login cookie."""
    with httpx.Client(base_url=url, timeout=60) as http:
        assert http.post("login", data={"username": user, "password": password}).status_code == 200
        yield http


def completed(http: httpx.Client, session: str) -> dict:
    """Gradio's final message for the event `session` joined the queue with."""
    with http.stream("GET", "gradio_api/queue/data", params={"session_hash": session}) as stream:
        for line in stream.iter_lines():
            if line.startswith("data:"):
                message = json.loads(line.removeprefix("data:"))
                if message.get("msg") == "process_completed":
                    return message
    raise AssertionError("the queue closed without completing the event")


def refused(message: dict) -> str:
    """The error of a queue message that must be a refusal."""
    assert message["success"] is False, message
    return message["output"]["error"]


def log_entries(path: Path) -> list[dict]:
    """The lines of a JSON-lines log (none before it exists)."""
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


# The page, in the browser.


def question_box(page):
    """The chat's own question box (not the sidebar's title box)."""
    return (
        page.locator("#chat").locator("xpath=ancestor::div[contains(@class,'column')][1]").get_by_role("textbox").first
    )


def ask_in_browser(page, url, question):
    page.goto(url, wait_until="load")
    box = question_box(page)
    box.fill(question)
    box.press("Enter")


def log_in_page(page, url: str, user: str, password: str) -> None:
    """Open `url` and log in through the page's form."""
    page.goto(url, wait_until="load")
    page.get_by_label("username").fill(user)
    page.get_by_label("password").fill(password)
    page.get_by_role("button", name="Login").click()
    page.wait_for_selector("#chat", timeout=30_000)


# Corpora made for a test.

_WORDS = "international convention clearance villagers roadside detectors organisation humanitarian".split()


def numbered_lines(n: int) -> str:
    """`n` short lines of 12 tokens each: one chunk per line at a chunk size of 16 (6,000 lines: 538 KB)."""
    return "".join(f"Line {i:04d} " + " ".join(_WORDS[(i + j) % 8] for j in range(7)) + ".\n" for i in range(n))


REPORTS = 24


def reports_corpus(root: Path) -> Path:
    """`root`/corpus with REPORTS generated reports of 40 sentences each."""
    c = root / "corpus"
    c.mkdir(parents=True, exist_ok=True)
    words = "mine border treaty clearance field survey village river bridge convoy".split()
    for i in range(REPORTS):
        body = " ".join(
            f"Report {i} sentence {j} mentions the {words[(i + j) % 10]} and the {words[(i * j) % 10]}."
            for j in range(40)
        )
        (c / f"doc{i:02d}.md").write_text(f"# Report {i}\n\n{body}\n")
    return c


# A `python -c` program that ingests ./corpus into ./index; KILL_AT_UPDATE=n kills it at the n-th record write.
INGEST_DRIVER = textwrap.dedent(
    """
    import os, signal, sys
    import rag
    from langchain_classic.indexes import SQLRecordManager
    kill_at = int(os.environ.get("KILL_AT_UPDATE", "0"))
    if kill_at:
        original = SQLRecordManager.update
        calls = {"n": 0}
        def update(self, *a, **k):
            calls["n"] += 1
            if calls["n"] == kill_at:  # the vectors of this batch are written, its records are not
                os.kill(os.getpid(), signal.SIGKILL)
            return original(self, *a, **k)
        SQLRecordManager.update = update
    engine = rag.Engine(rag.Settings(corpus_dir="corpus", index_dir="index", index_batch_size=8, embed_batch_size=8))
    print(engine.ingest().summary(), flush=True)
    """
)


def damage_then_repair(engine: rag.Engine) -> rag.IngestReport:
    """Ingest, delete 3 records (vectors without records) and 2 vectors (records without vectors), ingest again:
    the second run re-adds exactly those 5 chunks and ends with as many as the first. Its report."""
    total = engine.ingest().chunks_total
    keys = engine.store.records.list_keys()
    engine.store.records.delete_keys(keys[:3])
    engine.store.vectorstore.delete(ids=keys[3:5])
    report = engine.ingest()
    assert report.chunks_total == total and report.chunks_added == 5
    return report
