"""Make the README's screenshots: the real embedded model answering in the served chat (desktop, with the saved
conversations and the sources panel), a citation opened in the document viewer, and the chat at phone width.

    .venv/bin/python docs/screenshots.py        # needs `rag ingest` first and Debian's chromium
"""

import sys
import tempfile
from pathlib import Path

from playwright.sync_api import sync_playwright

import rag
from ui import serve as ui_serve

HERE = Path(__file__).resolve().parent
QUESTIONS = ["When was the Ottawa Convention signed?", "How long is Finland's border with Russia?"]


def ask(page, question: str) -> None:
    box = (
        page.locator("#chat").locator("xpath=ancestor::div[contains(@class,'column')][1]").get_by_role("textbox").first
    )
    box.fill(question)
    box.press("Enter")
    page.wait_for_function(  # the answer is in: its sources are shown and the stop button is gone
        "document.querySelector('#sources .source') && !document.querySelector('button.stop-button')", timeout=300_000
    )


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        settings = rag.load_settings().model_copy(
            update={"llm_backend": "local", "conversations_db_url": f"sqlite:///{Path(tmp) / 'chats.sqlite'}"}
        )
        engine = rag.Engine(settings)
        engine.warm_up()
        ui_serve.launch(engine, port=7870, block=False)
        url = "http://127.0.0.1:7870/"
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox", "--disable-gpu"])
                page = browser.new_page(viewport={"width": 1400, "height": 960})
                page.goto(url, wait_until="load")
                ask(page, QUESTIONS[0])
                page.locator("#new-chat").click()
                page.wait_for_function("!document.querySelector('#sources .source')")
                ask(page, QUESTIONS[1])
                page.wait_for_timeout(500)
                page.screenshot(path=str(HERE / "screenshot.png"))
                page.locator("#sources .source button").first.click()
                page.wait_for_selector("#viewer mark")
                page.wait_for_timeout(500)
                page.screenshot(path=str(HERE / "viewer.png"))
                phone = browser.new_page(viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True)
                phone.goto(url, wait_until="load")
                ask(phone, QUESTIONS[0])
                phone.locator("#chat .message.bot").last.scroll_into_view_if_needed()
                phone.screenshot(path=str(HERE / "phone.png"))
                browser.close()
        finally:
            ui_serve.close_all()
    print("written:", *(HERE / n for n in ("screenshot.png", "viewer.png", "phone.png")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
