"""#29.8 in the page: with the PostgreSQL of the saved conversations stopped under a running `rag serve`, the chat
still answers and says the conversation could not be saved, and so does "New chat" (tests/test_outages.py: the API)."""

import json
import re

import pytest
from playwright.sync_api import expect

from ..helpers import question_box

pytestmark = [pytest.mark.browser, pytest.mark.server, pytest.mark.postgres]
Q1 = "When was the Ottawa Convention signed?"
Q2 = "How long is Finland's border with Russia?"


def test_the_page_says_the_conversation_could_not_be_saved_and_new_chat_too(postgres_served, browser):
    engine, url, pg = postgres_served
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.goto(url + "/", wait_until="load")
    box = question_box(page)
    box.fill(Q1)
    box.press("Enter")
    page.wait_for_selector(f"#conversations label:has-text({json.dumps(Q1)})", timeout=60_000)  # saved, listed

    pg.stop()
    box.fill(Q2)
    box.press("Enter")
    expect(page.locator("#chat .message.bot").nth(1)).to_contain_text(
        re.compile(r"\[\d+\]"), timeout=60_000
    )  # answered
    expect(page.locator("#conversation-status")).to_contain_text("could not be saved", timeout=30_000)
    expect(page.get_by_test_id("toast-body").filter(has_text="could not be saved").first).to_be_visible()

    page.locator("#new-chat").click()
    page.wait_for_function("document.querySelectorAll('#chat .message').length === 0")
    expect(page.locator("#conversation-status")).to_contain_text("could not be saved")
    errors = page.locator("[data-testid='toast-body'].error")
    page.wait_for_timeout(1000)
    assert errors.count() == 0, errors.all_inner_texts()  # no empty "Error"
