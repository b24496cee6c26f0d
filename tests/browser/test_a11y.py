"""Usable by everyone: no serious or critical axe-core violation on the chat and corpus pages, the whole chat by
keyboard alone (ask, open a source, give feedback, start a new chat), and a usable layout at phone width."""

import json
import time

import pytest

from ..helpers import ROOT, SHOTS, question_box, served_scripted

pytestmark = pytest.mark.browser
AXE = ROOT / "tests" / "a11y" / "node_modules" / "axe-core" / "axe.min.js"
Q = "When was the Ottawa Convention signed?"


@pytest.fixture
def served(ready_settings, embedder, tmp_path):
    # ui_admin: the corpus page with its upload, re-index and remove controls (loopback: allowed)
    with served_scripted(
        ready_settings, embedder, tmp_path, feedback_file=tmp_path / "feedback.jsonl", ui_admin=True
    ) as both:
        yield both


def _ask(page, question: str) -> None:
    box = question_box(page)
    box.fill(question)
    box.press("Enter")
    page.wait_for_selector("#sources h3:has-text('Sources') ~ .source", timeout=60_000)


def _violations(page) -> list[dict]:
    """axe-core's serious and critical findings on what the page shows now."""
    if not AXE.is_file():
        pytest.fail(f"{AXE} is missing: `make test` installs it (npm ci --prefix tests/a11y)")
    page.add_script_tag(path=str(AXE))
    found = page.evaluate(
        """async () => (await axe.run(document, {resultTypes: ['violations']})).violations
            .filter(v => v.impact === 'serious' || v.impact === 'critical')
            .map(v => ({id: v.id, impact: v.impact, nodes: v.nodes.map(n => n.target.join(' '))}))"""
    )
    return found


def test_no_serious_or_critical_accessibility_violations(browser, served):
    _, url = served
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.goto(url, wait_until="load")
    page.wait_for_selector("#chat")
    found = _violations(page)
    assert found == [], found  # the empty chat
    _ask(page, Q)
    page.locator("#sources .source button").first.click()  # the document viewer open too
    page.wait_for_selector("#viewer mark", timeout=30_000)
    assert _violations(page) == []
    page.keyboard.press("Escape")  # the viewer is modal: close it first
    page.wait_for_selector("#viewer mark", state="hidden", timeout=10_000)
    page.get_by_role("tab", name="Corpus").click()
    page.wait_for_selector("#corpus-table, table", timeout=30_000)
    found = _violations(page)
    assert found == [], found


def test_axe_reports_what_it_should(browser, served):
    """The check itself bites: an unlabelled button and faint text put into the page are reported."""
    _, url = served
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.goto(url, wait_until="load")
    page.wait_for_selector("#chat")
    page.evaluate(
        """() => { const b = document.createElement('button'); b.innerHTML = '<svg width="10" height="10"></svg>';
                   const p = document.createElement('p'); p.textContent = 'faint'; p.style.color = '#eeeeee';
                   document.body.append(b, p); }"""
    )
    assert {v["id"] for v in _violations(page)} >= {"button-name", "color-contrast"}


def _tab_to(page, predicate: str, limit: int = 120) -> None:
    """Press Tab (only the keyboard) until `predicate(document.activeElement)` holds."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        if page.evaluate(f"() => {{ const el = document.activeElement; return Boolean({predicate}); }}"):
            return
    raise AssertionError(f"Tab never reached an element where {predicate}")


def test_keyboard_only_ask_open_a_source_give_feedback_new_chat(browser, served):
    engine, url = served
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.goto(url, wait_until="load")
    page.wait_for_selector("#chat")

    _tab_to(page, "el.tagName === 'TEXTAREA' && el.closest('.column') && el.closest('.column').querySelector('#chat')")
    page.keyboard.type(Q)
    page.keyboard.press("Enter")
    page.wait_for_selector("#sources h3:has-text('Sources') ~ .source", timeout=60_000)

    _tab_to(page, "el.tagName === 'BUTTON' && el.closest('#sources .source')")
    page.keyboard.press("Enter")
    page.wait_for_selector("#viewer mark", timeout=30_000)
    assert page.locator("#viewer mark").first.is_visible()
    assert page.evaluate("() => Boolean(document.activeElement.closest('#viewer'))"), "focus moves into the viewer"
    page.keyboard.press("Escape")
    page.wait_for_selector("#viewer mark", state="hidden", timeout=10_000)

    _tab_to(page, "el.tagName === 'BUTTON' && el.getAttribute('aria-label') === 'Dislike' && el.closest('#chat')")
    page.keyboard.press("Enter")
    log = engine.settings.feedback_file
    deadline = time.monotonic() + 15
    while not (log.is_file() and log.read_text().strip()) and time.monotonic() < deadline:
        time.sleep(0.2)
    (entry,) = [json.loads(line) for line in log.read_text().splitlines()]
    assert entry["liked"] is False and entry["question"] == Q and entry["citations"]

    _tab_to(page, "el.id === 'new-chat'")
    page.keyboard.press("Enter")
    page.wait_for_function("document.querySelectorAll('#chat .message').length === 0", timeout=10_000)


def test_phone_width_layout_is_usable(browser, served):
    _, url = served
    page = browser.new_page(
        viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True, has_touch=True
    )
    page.goto(url, wait_until="load")
    page.wait_for_selector("#chat")
    _ask(page, Q)
    width = page.evaluate("() => window.innerWidth")
    assert page.evaluate("() => document.documentElement.scrollWidth") <= width + 1, "nothing scrolls sideways"
    for selector in ("#chat", "#sources"):
        box = page.locator(selector).bounding_box()
        assert box and box["x"] >= 0 and box["x"] + box["width"] <= width + 1, (selector, box)
    textbox = question_box(page)
    assert textbox.is_visible() and textbox.bounding_box()["width"] > width * 0.6
    for part in (textbox, page.locator("#chat .message.bot").last):  # on top where it is: nothing covers it
        part.scroll_into_view_if_needed()
        on_top = part.evaluate(
            "el => { const r = el.getBoundingClientRect();"
            " const at = document.elementFromPoint(r.x + r.width / 2, r.y + r.height / 2);"
            " return el === at || el.contains(at); }"
        )
        assert on_top, "covered (by the conversation list?)"
    assert "1997" in page.locator("#chat .message.bot").last.inner_text()
    SHOTS.mkdir(exist_ok=True)
    page.locator("#chat .message.bot").last.scroll_into_view_if_needed()
    page.screenshot(path=str(SHOTS / "phone.png"))
