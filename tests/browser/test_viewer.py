"""Open the source, in Debian's Chromium: a citation's button opens the whole document with the quote marked and
scrolled into view, by mouse and by keyboard, and a hostile document shows as text."""

import re
import shutil

import pytest

import rag
from ui import serve as ui_serve

from ..fakes import ReplayChatModel
from ..helpers import CORPUS, SHOTS, ask_in_browser, serve

pytestmark = pytest.mark.browser

BALTIC_URL = "https://www.toutiao.com/article/1836693622858816/"
BALTIC_QUOTE = (
    "The return of landmines may temporarily protect the borders of NATO countries, "
    "but in the long run, true security can only be achieved through diplomacy and cooperation."
)
EXPERTS_QUOTE = (
    "James Cowan, director of HALO, the largest mine clearance charity in the world, "
    "stated that he would not categorically condemn the U.S. decision to supply non-persistent mines to Ukraine "
    "due to the existential threat the country faces."
)
HOSTILE = (
    '---\ntitle: "Field <b>notes</b>"\nsource_url: "javascript:alert(3)"\n---\n# Field notes\n\n'
    "The mine clearance unit met at dawn <img src=x onerror=alert(1)> near the river. "
    "The unit cleared forty mines that week.\n"
)
# Where each part of the viewer is, and whether the mark shows inside the scrolled text and the window.
GEOMETRY = """() => {
  const text = document.querySelector('#viewer dialog.viewer[open] .viewer-text');
  const mark = document.querySelector('#viewer-mark').getBoundingClientRect();
  const box = text.getBoundingClientRect();
  return {mark: [mark.top, mark.bottom], box: [box.top, box.bottom], height: innerHeight,
          scrolled: text.scrollTop, scrollable: text.scrollHeight > text.clientHeight + 50};
}"""
FOCUS = """() => {
  const el = document.activeElement;
  return {inDialog: !!(el && el.closest('dialog.viewer[open]')), cls: el ? el.className : '',
          source: el ? el.dataset.source || '' : ''};
}"""


@pytest.fixture(scope="module")
def viewer_settings(tmp_path_factory, embedder):
    """The corpus and a document with markup in its text, title and address, indexed once (absolute source ids)."""
    root = tmp_path_factory.mktemp("viewer")
    shutil.copytree(CORPUS, root / "corpus")
    (root / "corpus" / "hostile.md").write_text(HOSTILE)
    settings = rag.Settings(corpus_dir=root / "corpus", index_dir=root / "index", llm_backend="local")
    assert rag.Engine(settings, embedder=embedder).ingest().ok
    return settings


def _watch(page):
    """Alert dialogs and requests that leave 127.0.0.1, recorded as they happen."""
    alerts, outside = [], []
    page.on("dialog", lambda d: (alerts.append(d.message), d.dismiss()))
    page.on(
        "request",
        lambda r: outside.append(r.url) if not r.url.startswith(("http://127.0.0.1", "data:", "blob:")) else None,
    )
    return alerts, outside


def _open_button(page, quote_start: str):
    """The "Open document" button of the card whose marked quote starts with `quote_start`."""
    page.wait_for_selector("#sources h3:has-text('Sources') ~ .source button.open-doc", timeout=60_000)
    card = page.locator("#sources .source").filter(has=page.locator("mark", has_text=quote_start))
    assert card.count() == 1, page.locator("#sources").inner_text()
    return card.get_by_role("button", name=re.compile(r"^Open document \[\d+\]: "))


def test_a_citation_opens_the_whole_document_at_the_quote(browser, viewer_settings, embedder):
    engine = rag.Engine(viewer_settings, embedder=embedder, llm=ReplayChatModel([BALTIC_QUOTE.rstrip(".") + " [1]."]))
    url = serve(engine)
    try:
        page = browser.new_page(viewport={"width": 1200, "height": 700})
        alerts, outside = _watch(page)
        ask_in_browser(page, url, "Can the return of landmines protect the borders of NATO countries in the long run?")
        button = _open_button(page, "The return of landmines")
        source, start, end = (button.get_attribute(a) for a in ("data-source", "data-start", "data-end"))
        doc = engine.docs.document(source)
        assert doc.text[int(start) : int(end)] == BALTIC_QUOTE, "the button carries the quote's offsets in the document"

        button.click()
        dialog = page.locator("#viewer dialog.viewer[open]")
        dialog.wait_for(state="visible", timeout=10_000)
        assert dialog.locator(".viewer-text").text_content() == doc.text, "the whole document, as indexed, as text"
        assert dialog.locator("h2").inner_text() == doc.title
        assert dialog.locator("#viewer-mark").text_content() == BALTIC_QUOTE
        page.wait_for_timeout(300)  # let a smooth scroll settle, if any
        at = page.evaluate(GEOMETRY)
        assert at["scrollable"] and at["scrolled"] > 0, f"the quote is far down a long text: it must have scrolled {at}"
        assert at["box"][0] <= at["mark"][0] < at["mark"][1] <= at["box"][1], f"the mark shows inside the text box {at}"
        assert 0 <= at["mark"][0] and at["mark"][1] <= at["height"], f"and inside the window {at}"
        assert page.evaluate(FOCUS)["inDialog"], "keyboard focus moved into the viewer"
        links = dialog.get_by_role("link")
        assert links.count() == 1 and links.inner_text() == BALTIC_URL
        assert links.get_attribute("href") == BALTIC_URL and links.get_attribute("target") == "_blank"
        assert set(links.get_attribute("rel").split()) == {"noopener", "noreferrer", "nofollow"}
        SHOTS.mkdir(exist_ok=True)
        page.screenshot(path=str(SHOTS / "viewer.png"))

        dialog.get_by_role("button", name="Close").click()
        page.wait_for_selector("#viewer dialog", state="detached", timeout=5_000)
        assert page.evaluate(FOCUS)["source"] == source, "focus went back to the button that opened the viewer"
        assert alerts == [] and outside == [], (alerts, outside)
    finally:
        ui_serve.close_all()


def test_keyboard_only_opens_and_closes_the_viewer_and_no_address_no_link(browser, viewer_settings, embedder):
    """Tab to the button, Enter opens the viewer with the focus in it, Escape closes it and gives the focus back;
    the experts article has no original address, so the viewer shows no link."""
    engine = rag.Engine(viewer_settings, embedder=embedder, llm=ReplayChatModel([EXPERTS_QUOTE.rstrip(".") + " [1]."]))
    url = serve(engine)
    try:
        page = browser.new_page(viewport={"width": 1200, "height": 700})
        ask_in_browser(
            page, url, "What did the director of HALO say about the U.S. decision to supply mines to Ukraine?"
        )
        button = _open_button(page, "James Cowan")
        source = button.get_attribute("data-source")
        for _ in range(200):
            if page.evaluate(FOCUS)["source"] == source:
                break
            page.keyboard.press("Tab")
        assert page.evaluate(FOCUS) == {"inDialog": False, "cls": "open-doc", "source": source}, (
            "Tab reaches the button"
        )

        page.keyboard.press("Enter")
        dialog = page.locator("#viewer dialog.viewer[open]")
        dialog.wait_for(state="visible", timeout=10_000)
        assert dialog.locator("#viewer-mark").text_content() == EXPERTS_QUOTE
        assert page.evaluate(FOCUS)["inDialog"] and page.evaluate(FOCUS)["cls"] == "viewer-text", (
            "focus on the text: arrows scroll it"
        )
        assert dialog.get_by_role("link").count() == 0 and dialog.locator("a").count() == 0
        assert source in dialog.locator(".viewer-meta").inner_text()
        stops = []
        for _ in range(4):  # text -> Close -> text ...: the focus goes round inside the viewer
            page.keyboard.press("Tab")
            stops.append(page.evaluate(FOCUS))
        assert all(s["inDialog"] for s in stops) and {s["cls"] for s in stops} == {"viewer-close", "viewer-text"}, stops
        page.keyboard.press("Shift+Tab")
        assert page.evaluate(FOCUS)["inDialog"]
        page.keyboard.press("Shift+Tab")
        assert page.evaluate(FOCUS)["inDialog"]

        page.keyboard.press("Escape")
        page.wait_for_selector("#viewer dialog", state="detached", timeout=5_000)
        assert page.evaluate(FOCUS) == {"inDialog": False, "cls": "open-doc", "source": source}, (
            "Escape gives the focus back"
        )
        page.keyboard.press("Enter")  # and the same button opens it again
        dialog.wait_for(state="visible", timeout=10_000)
        assert dialog.locator("#viewer-mark").text_content() == EXPERTS_QUOTE
    finally:
        ui_serve.close_all()


def test_a_hostile_document_shows_as_text_in_the_viewer(browser, viewer_settings, embedder):
    """Markup in a document's text, title and address is shown as written: nothing runs, loads or links."""
    engine = rag.Engine(
        viewer_settings,
        embedder=embedder,
        llm=ReplayChatModel(["The mine clearance unit met at dawn near the river [1]."]),
    )
    url = serve(engine)
    try:
        page = browser.new_page(viewport={"width": 1200, "height": 700})
        alerts, outside = _watch(page)
        ask_in_browser(page, url, "When did the mine clearance unit meet?")
        _open_button(page, "The mine clearance unit").click()
        dialog = page.locator("#viewer dialog.viewer[open]")
        dialog.wait_for(state="visible", timeout=10_000)
        page.wait_for_timeout(1000)
        assert "<img src=x onerror=alert(1)>" in dialog.locator("#viewer-mark").text_content()
        assert dialog.locator("h2").inner_text() == "Field <b>notes</b>"
        assert "javascript:alert(3)" in dialog.locator(".viewer-meta").inner_text()
        assert page.locator("#viewer img, #viewer b, #viewer a, #viewer script, #sources img").count() == 0
        assert alerts == [] and outside == [], (alerts, outside)
    finally:
        ui_serve.close_all()
