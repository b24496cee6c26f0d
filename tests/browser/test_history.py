"""Saved conversations in the real page: resume after a reload, choose, rename, export, delete; users kept apart."""

import json

import pytest
from pydantic import SecretStr

from ..helpers import log_in_page, question_box, served_scripted

pytestmark = pytest.mark.browser
Q1 = "When was the Ottawa Convention signed?"
Q2 = "How long is Finland's border with Russia?"


def _ask(page, question: str) -> None:
    box = question_box(page)
    box.fill(question)
    box.press("Enter")
    page.wait_for_selector(f"#conversations label:has-text({json.dumps(question)})", timeout=60_000)  # saved, listed


def _listed(page) -> list[str]:
    return [t.strip() for t in page.locator("#conversations label").all_inner_texts()]


@pytest.fixture
def served(ready_settings, embedder, tmp_path):
    with served_scripted(
        ready_settings, embedder, tmp_path, ui_auth=SecretStr("alice:alice-pass-1,bob:bob-pass-2")
    ) as both:
        yield both


def test_resume_choose_rename_export_delete(browser, served, tmp_path):
    engine, url = served
    page = browser.new_context(viewport={"width": 1400, "height": 900}, accept_downloads=True).new_page()
    log_in_page(page, url, "alice", "alice-pass-1")
    assert _listed(page) == []
    _ask(page, Q1)
    first_answer = page.locator("#chat .message.bot").last.inner_text()

    page.reload(wait_until="load")  # the page keeps showing the conversation
    page.wait_for_selector("#chat .message.bot", timeout=30_000)
    assert Q1 in page.locator("#chat .message.user").first.inner_text()
    assert page.locator("#chat .message.bot").last.inner_text() == first_answer
    assert page.locator("#sources .source").count() >= 1  # the last answer's sources are back too

    page.locator("#new-chat").click()
    page.wait_for_function("document.querySelectorAll('#chat .message').length === 0")
    _ask(page, Q2)
    assert len(_listed(page)) == 2 and Q2 in _listed(page)[0]  # newest first

    page.locator("#conversations label", has_text=Q1).click()  # resume the first
    page.wait_for_function(f"document.querySelector('#chat').innerText.includes({json.dumps(Q1)})")
    assert Q2 not in page.locator("#chat").inner_text()

    title = page.locator("#conversation-title textarea, #conversation-title input").first
    assert title.input_value() == Q1
    title.fill("Signing date")
    page.locator("#rename-conversation").click()
    page.wait_for_selector("#conversations label:has-text('Signing date')", timeout=30_000)

    for button, check in (
        ("#export-md", lambda t: t.startswith("# Signing date") and "Sources:" in t),
        ("#export-json", None),
    ):
        with page.expect_download() as download:
            page.locator(button).click()
        text = open(download.value.path(), encoding="utf-8").read()
        if check:
            assert check(text), text
        else:
            data = json.loads(text)
            assert data["title"] == "Signing date" and [t["question"] for t in data["turns"]] == [Q1]
            assert data["turns"][0]["citations"][0]["quote"] in data["turns"][0]["citations"][0]["text"]

    page.locator("#delete-conversation").click()
    page.wait_for_function("!document.querySelector('#conversations').innerText.includes('Signing date')")
    assert len(_listed(page)) == 1 and page.locator("#chat .message").count() == 0
    assert [s.title for s in engine.conversations.list("alice")] == [Q2]


def test_each_user_sees_only_their_own_conversations(browser, served):
    engine, url = served
    alice = browser.new_context(viewport={"width": 1400, "height": 900}).new_page()
    log_in_page(alice, url, "alice", "alice-pass-1")
    _ask(alice, Q1)
    (alices,) = engine.conversations.list("alice")

    bob = browser.new_context(viewport={"width": 1400, "height": 900}).new_page()
    log_in_page(bob, url, "bob", "bob-pass-2")
    assert _listed(bob) == [] and bob.locator("#chat .message").count() == 0
    _ask(bob, Q2)
    assert [t for t in _listed(bob) if Q1 in t] == []
    assert [s.title for s in engine.conversations.list("bob")] == [Q2]
    alice.reload(wait_until="load")
    alice.wait_for_selector("#conversations label", timeout=30_000)
    assert len(_listed(alice)) == 1 and Q1 in _listed(alice)[0]
    assert engine.conversations.get("alice", alices.id).turns[0].question == Q1
