"""What a person does in the page besides asking: a thumbs up/down on an answer, and the Corpus tab's admin actions."""

import json
import shutil
import time

import pytest
from playwright.sync_api import expect

import rag
from rag.load import load
from ui import serve as ui_serve
from ui.corpus import OFF, OPEN_ADMIN

from ..fakes import ReplayChatModel, ScriptedChatModel
from ..helpers import CORPUS, ask_in_browser, numbered_lines, question_box, serve

pytestmark = pytest.mark.browser
Q = "When was the Ottawa Convention signed?"
KEPT = "The Ottawa Convention was signed in 1997 [1]."
SIGNED = "corpus/baltic-states-poland-finland-leave-ottawa-convention.md"
FINAL = (
    "#sources h3:has-text('Sources') ~ .source"  # the checked answer's cards (not the evidence shown while streaming)
)


def _entries(path, timeout=30.0) -> list[dict]:
    """The feedback log's entries once one has arrived, and a moment longer (a vote logged twice would show)."""
    deadline = time.monotonic() + timeout
    while not (path.exists() and path.read_text().strip()):
        assert time.monotonic() < deadline, f"no vote reached {path} in {timeout} s"
        time.sleep(0.2)
    time.sleep(1.0)
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize(
    ("reply", "button", "liked"),
    [
        pytest.param(KEPT, "Dislike", False, id="thumbs-down"),
        # A sentence the check removes stays in the chat struck through, so the shown text is not the checked answer.
        pytest.param(KEPT + " It was signed by 300 countries [1].", "Like", True, id="thumbs-up-on-a-struck-answer"),
    ],
)
def test_a_vote_in_the_page_logs_the_question_answer_and_citations(
    browser, ready_settings, embedder, tmp_path, reply, button, liked
):
    log = tmp_path / "feedback" / "votes.jsonl"
    settings = ready_settings.model_copy(update={"llm_backend": "local", "feedback_file": log})
    engine = rag.Engine(settings, embedder=embedder, llm=ReplayChatModel([reply]))
    url = serve(engine)
    try:
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        ask_in_browser(page, url, Q)
        page.wait_for_selector(FINAL, timeout=60_000)
        bot = page.locator("#chat .message.bot").last
        expect(bot).to_contain_text("1997")
        if "300" in reply:
            expect(bot.locator("del, s")).to_contain_text("300 countries")
        page.locator(f"#chat button[aria-label='{button}']").last.click()
        expect(page.locator(f"#chat button[aria-label='{button}d']").last).to_be_visible()

        entries = _entries(log)
        assert len(entries) == 1, entries
        entry = entries[0]
        assert entry["liked"] is liked and entry["question"] == Q and entry["answer"] == KEPT, entry
        assert [(c["n"], c["source"]) for c in entry["citations"]] == [(1, SIGNED)], entry["citations"]
        c = entry["citations"][0]
        assert "1997" in c["quote"] and c["chunk_id"]
        assert load(ready_settings.corpus_dir.parent / c["source"]).text[c["start"] : c["end"]] == c["quote"]
    finally:
        ui_serve.close_all()


NOTES = "# Demining notes\n\nClearing one hectare of minefield took the team eleven days.\n"
NEW = "corpus/notes.md"


def _sources(engine: rag.Engine) -> set[str]:
    return {d["source"] for d in engine.admin.documents()}


def test_admin_uploads_reindexes_and_removes_a_document_in_the_corpus_tab(browser, tmp_path, embedder, monkeypatch):
    """Upload through the file input, ask about it in the chat, re-index an edit, then remove it: the status line,
    the table and the index follow each step."""
    monkeypatch.chdir(tmp_path)  # source ids read "corpus/…"
    shutil.copytree(CORPUS, tmp_path / "corpus")
    settings = rag.Settings(
        corpus_dir=tmp_path / "corpus", index_dir=tmp_path / "index", llm_backend="local", ui_admin=True
    )
    engine = rag.Engine(settings, embedder=embedder, llm=ScriptedChatModel())
    engine.ingest()
    before = _sources(engine)
    upload = tmp_path / "upload" / "notes.md"
    upload.parent.mkdir()
    upload.write_text(NOTES)
    url = serve(engine)
    try:
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto(url, wait_until="load")
        page.get_by_role("tab", name="Corpus").click()
        status, table = page.locator("#corpus-status"), page.locator("#corpus-table")
        expect(page.locator("#admin-warning")).to_contain_text(OPEN_ADMIN)
        expect(table).not_to_contain_text(NEW)

        page.locator("#corpus-upload input[type=file]").set_input_files(upload)
        expect(status).to_contain_text("Indexed: 1 added", timeout=60_000)
        expect(table).to_contain_text(NEW)
        expect(table).to_contain_text("Demining notes")
        assert (tmp_path / NEW).read_text() == NOTES and _sources(engine) == before | {NEW}

        page.get_by_role("tab", name="Chat").click()
        box = question_box(page)
        box.fill("How many days did the team take to clear one hectare of minefield?")
        box.press("Enter")
        page.wait_for_selector(FINAL, timeout=60_000)
        expect(page.locator("#sources #source-1 .source-head")).to_contain_text("Demining notes")
        expect(page.locator("#chat .message.bot").last).to_contain_text("eleven days")

        (tmp_path / NEW).write_text(NOTES + "\nThe team worked with four mine detection dogs.\n")
        page.get_by_role("tab", name="Corpus").click()
        page.locator("#corpus-reindex").click()
        expect(status).to_contain_text("Re-indexed: 0 added, 1 updated, 2 skipped, 0 deleted, 0 failed", timeout=60_000)
        expect(table).to_contain_text(NEW)
        assert engine.search("How many mine detection dogs did the team have?", k=1)[0].source == NEW

        page.locator("#corpus-document input").click()
        page.get_by_role("option", name=NEW, exact=True).click()
        page.locator("#corpus-remove").click()
        expect(status).to_contain_text(f"Removed {NEW}: 0 added, 0 updated, 2 skipped, 1 deleted", timeout=60_000)
        expect(table).not_to_contain_text(NEW)
        expect(table).to_contain_text(sorted(before)[0])
        assert not (tmp_path / NEW).exists() and _sources(engine) == before
        assert all(h.source != NEW for h in engine.search("How many days to clear one hectare of minefield?", k=10))
    finally:
        ui_serve.close_all()


def test_with_admin_off_the_corpus_tab_lists_but_cannot_change(browser, ready_settings, embedder):
    engine = rag.Engine(ready_settings, embedder=embedder)
    url = serve(engine)
    try:
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto(url, wait_until="load")
        page.get_by_role("tab", name="Corpus").click()
        expect(page.locator("#corpus-status")).to_have_text(OFF.replace("`", ""))
        expect(page.locator("#corpus-table")).to_contain_text(SIGNED)
        for control in ("#corpus-upload", "#corpus-reindex", "#corpus-document", "#corpus-remove"):
            assert not page.locator(control).is_visible(), f"{control} is shown with the admin actions off"
        assert page.locator("#corpus-upload input[type=file]").count() == 0
        assert page.locator("#admin-warning").count() == 0
        refused = page.request.post(
            url + "gradio_api/upload", multipart={"files": {"name": "x.md", "mimeType": "text/plain", "buffer": b"# x"}}
        )
        assert refused.status == 403
    finally:
        ui_serve.close_all()


def test_a_file_that_failed_to_index_is_listed_and_removed_in_the_corpus_tab(browser, tmp_path, embedder, monkeypatch):
    """A file over the per-file chunk cap fails (the files beside it are indexed); the tab lists it with why, and
    removing it deletes it from the corpus, so later ingestions stop trying it."""
    monkeypatch.chdir(tmp_path)
    shutil.copytree(CORPUS, tmp_path / "corpus")
    big = "corpus/big.txt"
    (tmp_path / big).write_text(numbered_lines(6000))  # 6,000 chunks at 16 tokens: over the default cap of 5,000
    settings = rag.Settings(
        corpus_dir=tmp_path / "corpus",
        index_dir=tmp_path / "index",
        llm_backend="local",
        ui_admin=True,
        chunk_size=16,
        chunk_overlap=4,
    )
    engine = rag.Engine(settings, embedder=embedder, llm=ScriptedChatModel())
    report = engine.ingest()
    assert list(report.failed) == [big] and len(report.added) == 2
    url = serve(engine)
    try:
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto(url, wait_until="load")
        page.get_by_role("tab", name="Corpus").click()
        failed = page.locator("#corpus-failed")
        expect(failed).to_contain_text(big)
        expect(failed).to_contain_text(
            "makes 6000 chunks at RAG_CHUNK_SIZE=16, over the limit of 5000 per file (RAG_MAX_FILE_CHUNKS)"
        )
        expect(page.locator("#corpus-table")).not_to_contain_text(big)

        page.locator("#corpus-document input").click()
        page.get_by_role("option", name=big, exact=True).click()
        page.locator("#corpus-remove").click()
        expect(page.locator("#corpus-status")).to_contain_text(
            f"Removed {big}: 0 added, 0 updated, 2 skipped, 0 deleted, 0 failed", timeout=60_000
        )
        expect(failed).to_be_hidden()
        assert not (tmp_path / big).exists() and engine.admin.not_indexed() == []
        assert engine.ingest().summary().startswith("0 added, 0 updated, 2 skipped, 0 deleted, 0 failed")
    finally:
        ui_serve.close_all()
