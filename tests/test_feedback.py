"""#29.7: a thumbs up/down counts only on an answer the voting session (and login) was shown, names its voter, is
limited per session and stops at the log's cap. From outside: the real page votes on its own answer; another user's
replayed or forged like events, and a flood of large ones, are refused and log nothing."""

import logging
import time
import uuid

import httpx
import pytest

from ui import feedback

from .helpers import completed, feedback_app, log_entries, logged_in, refused

Q = "When was the Ottawa Convention signed?"


@pytest.fixture
def served(ready_settings, embedder, tmp_path):
    with feedback_app(ready_settings, embedder, tmp_path) as start:
        yield start


def _like(http: httpx.Client, session: str, value, liked: bool = True) -> dict:
    """A like event on the chat, sent through the queue as the page sends it, from `session`; Gradio's last message."""
    config = http.get("config").json()
    chat = next(c["id"] for c in config["components"] if c.get("props", {}).get("elem_id") == "chat")
    fn = next(d["id"] for d in config["dependencies"] if [chat, "like"] in [list(t) for t in d["targets"]])
    event = {"index": 1, "value": value if isinstance(value, list) else [value], "liked": liked}  # as the page sends it
    body = {"data": [], "fn_index": fn, "session_hash": session, "trigger_id": chat, "event_data": event}
    joined = http.post("gradio_api/queue/join", json=body)
    assert joined.status_code == 200, joined.text
    return completed(http, session)


@pytest.mark.heavy
def test_votes_count_only_from_the_session_shown_the_answer_and_stop_at_the_limits(served, caplog):
    from gradio_client import Client

    engine, url, log = served(feedback_max_mb=0.003)
    alice = Client(url, auth=("alice", "alice-pass-1"), verbose=False)
    shown = alice.predict(Q, 4, "local", api_name="/respond")[0]  # what her page shows (and a vote sends back)
    with logged_in(url, "alice", "alice-pass-1") as http:
        assert _like(http, alice.session_hash, shown)["success"]

    with logged_in(url, "bob", "bob-pass-2") as bob:
        # Bob sends Alice's text: from a session of his own, and naming her session.
        for session in (uuid.uuid4().hex, alice.session_hash):
            assert "no answer this chat showed you" in refused(_like(bob, session, shown, liked=False))
        # A flood of large votes from one session: refused, and after a minute's worth, refused at once.
        flood, reasons, started = uuid.uuid4().hex, set(), time.monotonic()
        for i in range(200):
            reasons.add(refused(_like(bob, flood, f"{i} " + "x" * 50_000)))
        assert reasons == {feedback.NOT_SHOWN, feedback.TOO_MANY}, reasons
        assert time.monotonic() - started < 120
    (entry,) = log_entries(log)  # nothing of Bob's was logged
    assert entry["voter"] == "alice" and entry["session"] == alice.session_hash and entry["liked"] is True
    assert entry["question"] == Q and entry["citations"]

    # Alice votes on her own answer until the log is at its cap: it never passes it, and the server log says so.
    with logged_in(url, "alice", "alice-pass-1") as http, caplog.at_level(logging.WARNING, logger="ui.feedback"):
        results = [_like(http, alice.session_hash, shown, liked=i % 2 == 0) for i in range(12)]
    assert [r["success"] for r in results].count(False) >= 1 and refused(results[-1]) == feedback.FULL
    assert 1 < len(log_entries(log)) and log.stat().st_size <= 3_000
    assert any("is full" in r.getMessage() for r in caplog.records)
