"""#29.7: a thumbs up/down counts only on an answer the voting session (and login) was shown, names its voter, is
limited per session and stops at the log's cap. From outside: the real page votes on its own answer; another user's
replayed or forged like events, and a flood of large ones, are refused and log nothing."""

import json
import logging
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
from playwright.sync_api import expect
from pydantic import SecretStr

import rag
from ui import feedback
from ui import serve as ui_serve

from .fakes import ScriptedChatModel
from .servers import free_port, wait_for_port
from .test_browser import browser, question_box  # noqa: F401 (the module's browser fixture)

Q = "When was the Ottawa Convention signed?"
LOGINS = SecretStr("alice:alice-pass-1,bob:bob-pass-2")


@pytest.fixture
def served(ready_settings, embedder, tmp_path):
    """(engine, url, the feedback log): the chat with two logins and a small feedback cap."""

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

    yield start
    ui_serve.close_all()


@contextmanager
def _logged_in(url: str, user: str, password: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=url, timeout=60) as http:
        assert http.post("login", data={"username": user, "password": password}).status_code == 200
        yield http


def _like(http: httpx.Client, session: str, value, liked: bool = True) -> dict:
    """A like event on the chat, sent through the queue as the page sends it, from `session`; Gradio's last message."""
    config = http.get("config").json()
    chat = next(c["id"] for c in config["components"] if c.get("props", {}).get("elem_id") == "chat")
    fn = next(d["id"] for d in config["dependencies"] if [chat, "like"] in [list(t) for t in d["targets"]])
    event = {"index": 1, "value": value if isinstance(value, list) else [value], "liked": liked}  # as the page sends it
    body = {"data": [], "fn_index": fn, "session_hash": session, "trigger_id": chat, "event_data": event}
    joined = http.post("gradio_api/queue/join", json=body)
    assert joined.status_code == 200, joined.text
    return _completed(http, session)


def _completed(http: httpx.Client, session: str) -> dict:
    with http.stream("GET", "gradio_api/queue/data", params={"session_hash": session}) as stream:
        for line in stream.iter_lines():
            if line.startswith("data:"):
                message = json.loads(line.removeprefix("data:"))
                if message.get("msg") == "process_completed":
                    return message
    raise AssertionError("the queue closed without completing the event")


def _refused(message: dict) -> str:
    assert message["success"] is False, message
    return message["output"]["error"]


def _entries(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_votes_count_only_from_the_session_shown_the_answer_and_stop_at_the_limits(served, caplog):
    from gradio_client import Client

    engine, url, log = served(feedback_max_mb=0.003)
    alice = Client(url, auth=("alice", "alice-pass-1"), verbose=False)
    shown = alice.predict(Q, 4, "local", api_name="/respond")[0]  # what her page shows (and a vote sends back)
    with _logged_in(url, "alice", "alice-pass-1") as http:
        assert _like(http, alice.session_hash, shown)["success"]

    with _logged_in(url, "bob", "bob-pass-2") as bob:
        # Bob sends Alice's text: from a session of his own, and naming her session.
        for session in (uuid.uuid4().hex, alice.session_hash):
            assert "no answer this chat showed you" in _refused(_like(bob, session, shown, liked=False))
        # A flood of large votes from one session: refused, and after a minute's worth, refused at once.
        flood, reasons, started = uuid.uuid4().hex, set(), time.monotonic()
        for i in range(200):
            reasons.add(_refused(_like(bob, flood, f"{i} " + "x" * 50_000)))
        assert reasons == {feedback.NOT_SHOWN, feedback.TOO_MANY}, reasons
        assert time.monotonic() - started < 120
    (entry,) = _entries(log)  # nothing of Bob's was logged
    assert entry["voter"] == "alice" and entry["session"] == alice.session_hash and entry["liked"] is True
    assert entry["question"] == Q and entry["citations"]

    # Alice votes on her own answer until the log is at its cap: it never passes it, and the server log says so.
    with _logged_in(url, "alice", "alice-pass-1") as http, caplog.at_level(logging.WARNING, logger="ui.feedback"):
        results = [_like(http, alice.session_hash, shown, liked=i % 2 == 0) for i in range(12)]
    assert [r["success"] for r in results].count(False) >= 1 and _refused(results[-1]) == feedback.FULL
    assert 1 < len(_entries(log)) and log.stat().st_size <= 3_000
    assert any("is full" in r.getMessage() for r in caplog.records)


@pytest.mark.browser
def test_the_page_votes_on_its_own_answer_and_a_replay_from_another_user_is_refused(served, browser):  # noqa: F811
    engine, url, log = served()
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.goto(url, wait_until="load")
    page.get_by_label("username").fill("alice")
    page.get_by_label("password").fill("alice-pass-1")
    page.get_by_role("button", name="Login").click()
    page.wait_for_selector("#chat", timeout=30_000)
    box = question_box(page)
    box.fill(Q)
    box.press("Enter")
    page.wait_for_selector("#sources h3:has-text('Sources') ~ .source", timeout=60_000)
    with page.expect_request(lambda r: "/queue/join" in r.url) as sent:
        page.locator("#chat button[aria-label='Like']").last.click()
    expect(page.locator("#chat button[aria-label='Liked']").last).to_be_visible()
    vote = sent.value.post_data_json
    deadline = time.monotonic() + 15
    while not _entries(log) and time.monotonic() < deadline:
        time.sleep(0.2)

    # Bob replays the page's own like request: from his session, and naming hers.
    with _logged_in(url, "bob", "bob-pass-2") as bob:
        for session in (uuid.uuid4().hex, vote["session_hash"]):
            replay = vote | {"session_hash": session}
            assert bob.post("gradio_api/queue/join", json=replay).status_code == 200
            assert "no answer this chat showed you" in _refused(_completed(bob, session))
    time.sleep(0.5)
    (entry,) = _entries(log)  # Alice's own vote, and nothing of Bob's
    assert entry["voter"] == "alice" and entry["session"] == vote["session_hash"] and entry["question"] == Q
