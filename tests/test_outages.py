"""#29.8: a service that does not answer is the server's trouble, said in neutral words, never the client's fault. With
the PostgreSQL of the records and the saved conversations stopped under a running `rag serve`: the API answers 503
(a client may retry; no address or driver text), and the chat still answers and says the conversation could not be
saved, as "New chat" does, instead of failing silently or with an empty error."""

import json
import re

import httpx
import pytest
from playwright.sync_api import expect

import rag
from ui import serve as ui_serve

from .fakes import ScriptedChatModel
from .servers import Postgres, free_port, wait_for_port
from .test_browser import browser, question_box  # noqa: F401 (the module's browser fixture)

pytestmark = pytest.mark.server
Q1 = "When was the Ottawa Convention signed?"
Q2 = "How long is Finland's border with Russia?"
BALTIC = "corpus/baltic-states-poland-finland-leave-ottawa-convention.md"


@pytest.fixture
def down(workdir, embedder):
    """(engine, url, the PostgreSQL): `rag serve` on an index whose records, and whose saved conversations, are in
    a PostgreSQL of this test's own, to stop."""
    pg = Postgres().start()
    settings = rag.Settings(
        corpus_dir=workdir / "corpus",
        index_dir=workdir / "index",
        record_db_url=pg.url,
        conversations_db_url=pg.url,
        llm_backend="local",
        index_refresh_s=0,
    )
    engine = rag.Engine(settings, embedder=embedder, llm=ScriptedChatModel())
    assert engine.ingest().ok
    port = free_port()
    ui_serve.launch(engine, port=port, block=False)
    wait_for_port(port)
    try:
        yield engine, f"http://127.0.0.1:{port}", pg
    finally:
        ui_serve.close_all()
        pg.remove()


def _neutral(r: httpx.Response, pg: Postgres) -> None:
    assert r.status_code == 503, r.text
    error = r.json()["error"]
    assert error["type"] == "server_error" and r.headers["retry-after"]
    for leak in (str(pg.port), "127.0.0.1", "psycopg", "postgres", "connection", "RAG_RECORD_DB_URL"):
        assert leak.lower() not in error["message"].lower(), error["message"]


def test_the_api_says_503_in_neutral_words_and_the_chat_that_it_could_not_save(down):
    from gradio_client import Client

    engine, url, pg = down
    chat = {"model": "rag", "messages": [{"role": "user", "content": Q2}], "sources": [BALTIC]}
    search = {"query": "Finland border", "sources": [BALTIC]}
    assert httpx.post(f"{url}/v1/chat/completions", json=chat, timeout=60).status_code == 200
    assert httpx.post(f"{url}/v1/search", json=search, timeout=60).status_code == 200
    unknown = httpx.post(f"{url}/v1/chat/completions", json=chat | {"sources": ["corpus/none.md"]}, timeout=60)
    assert unknown.status_code == 400 and unknown.json()["error"]["param"] == "sources"  # the client's own mistake

    pg.stop()
    _neutral(httpx.post(f"{url}/v1/chat/completions", json=chat, timeout=60), pg)  # was 400 with the address
    _neutral(httpx.post(f"{url}/v1/search", json=search, timeout=60), pg)

    text, *_, status = Client(url + "/", verbose=False).predict(Q2, 4, "local", api_name="/respond")
    assert re.search(r"\[\d+\]\.$", text), text  # answered (and cited) from what is open
    assert "could not be saved" in status, status  # and said it could not be saved

    pg.start()  # back: the next answer is saved again, and the line cleared
    text, *_, status = Client(url + "/", verbose=False).predict(Q1, 4, "local", api_name="/respond")
    assert re.search(r"\[\d+\]\.$", text) and status == ""
    assert [s.title for s in engine.conversations.list("")] == [Q1]


@pytest.mark.browser
def test_the_page_says_the_conversation_could_not_be_saved_and_new_chat_too(down, browser):  # noqa: F811
    engine, url, pg = down
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.goto(url + "/", wait_until="load")
    box = question_box(page)
    box.fill(Q1)
    box.press("Enter")
    page.wait_for_selector(f"#conversations label:has-text({json.dumps(Q1)})", timeout=60_000)  # saved, listed

    pg.stop()
    box.fill(Q2)
    box.press("Enter")
    expect(page.locator("#chat .message.bot").nth(1)).to_contain_text(re.compile(r"\[\d+\]"), timeout=60_000)  # answered
    expect(page.locator("#conversation-status")).to_contain_text("could not be saved", timeout=30_000)
    expect(page.get_by_test_id("toast-body").filter(has_text="could not be saved").first).to_be_visible()

    page.locator("#new-chat").click()
    page.wait_for_function("document.querySelectorAll('#chat .message').length === 0")
    expect(page.locator("#conversation-status")).to_contain_text("could not be saved")
    errors = page.locator("[data-testid='toast-body'].error")
    page.wait_for_timeout(1000)
    assert errors.count() == 0, errors.all_inner_texts()  # no empty "Error"
