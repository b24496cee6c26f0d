"""#29.7 in the page: a vote counts on the answer the voter was shown; another user's replay of it is refused
(tests/test_feedback.py holds the same rules tested over HTTP)."""

import time
import uuid

import pytest
from playwright.sync_api import expect

from ..helpers import completed, feedback_app, log_entries, logged_in, question_box, refused

pytestmark = pytest.mark.browser
Q = "When was the Ottawa Convention signed?"


@pytest.fixture
def served(ready_settings, embedder, tmp_path):
    with feedback_app(ready_settings, embedder, tmp_path) as start:
        yield start


def test_the_page_votes_on_its_own_answer_and_a_replay_from_another_user_is_refused(served, browser):
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
    while not log_entries(log) and time.monotonic() < deadline:
        time.sleep(0.2)

    # Bob replays the page's own like request: from his session, and naming hers.
    with logged_in(url, "bob", "bob-pass-2") as bob:
        for session in (uuid.uuid4().hex, vote["session_hash"]):
            replay = vote | {"session_hash": session}
            assert bob.post("gradio_api/queue/join", json=replay).status_code == 200
            assert "no answer this chat showed you" in refused(completed(bob, session))
    time.sleep(0.5)
    (entry,) = log_entries(log)  # Alice's own vote, and nothing of Bob's
    assert entry["voter"] == "alice" and entry["session"] == vote["session_hash"] and entry["question"] == Q
