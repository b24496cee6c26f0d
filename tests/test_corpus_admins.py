"""With a login, the Corpus tab's actions are for the admins named in RAG_UI_ADMINS only (#29, point 4): checked on
the server against the request's login for every action, whatever the page shows. Two users from outside: alice is
an admin, bob is not."""

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
from playwright.sync_api import expect
from pydantic import SecretStr

import rag
from ui import serve as ui_serve
from ui.corpus import read_only

from .fakes import ScriptedChatModel
from .servers import free_port
from .test_browser import browser  # noqa: F401 (the module's browser fixture)
from .test_browser_history import _login

LOGINS = SecretStr("alice:alice-pass-1,bob:bob-pass-2")
SIGNED = "corpus/baltic-states-poland-finland-leave-ottawa-convention.md"
NOTES = b"# Demining notes\n\nClearing one hectare of minefield took the team eleven days.\n"


@pytest.fixture
def served(workdir, embedder):
    """(engine, url): the corpus copy in `workdir` indexed and served with the two logins, alice the admin."""
    settings = rag.Settings(
        corpus_dir=workdir / "corpus",
        index_dir=workdir / "index",
        llm_backend="local",
        conversations_db_url=f"sqlite:///{workdir / 'chats.sqlite'}",
        ui_auth=LOGINS,
        ui_admin=True,
        ui_admins="alice",
    )
    engine = rag.Engine(settings, embedder=embedder, llm=ScriptedChatModel())
    assert engine.ingest().ok
    port = free_port()
    ui_serve.launch(engine, port=port, block=False)
    try:
        yield engine, f"http://127.0.0.1:{port}/"
    finally:
        ui_serve.close_all()


@contextmanager
def _logged_in(url: str, user: str, password: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=url, timeout=60) as http:
        assert http.post("login", data={"username": user, "password": password}).status_code == 200
        yield http


def _call(http: httpx.Client, elem_id: str, event: str, data: list) -> dict:
    """Run the page's `event` handler of the component `elem_id` through the queue, as the page does (the handlers are
    not in the API, but the page's own route reaches them); Gradio's final message."""
    config = http.get("config").json()
    target = next(c["id"] for c in config["components"] if c.get("props", {}).get("elem_id") == elem_id)
    fn = next(d["id"] for d in config["dependencies"] if [target, event] in [list(t) for t in d["targets"]])
    session = uuid.uuid4().hex
    joined = http.post(
        "gradio_api/queue/join", json={"data": data, "fn_index": fn, "session_hash": session, "trigger_id": target, "event_data": None}
    )
    assert joined.status_code == 200, joined.text
    with http.stream("GET", "gradio_api/queue/data", params={"session_hash": session}) as stream:
        for line in stream.iter_lines():
            if line.startswith("data:"):
                message = json.loads(line.removeprefix("data:"))
                if message.get("msg") == "process_completed":
                    return message
    raise AssertionError("the queue closed without completing the event")


def _upload(http: httpx.Client, name: str, body: bytes) -> list:
    r = http.post("gradio_api/upload", files={"files": (name, body, "text/markdown")})
    assert r.status_code == 200, r.text
    return [{"path": r.json()[0], "orig_name": name, "meta": {"_type": "gradio.FileData"}}]


def _refused(message: dict) -> str:
    assert message["success"] is False, message
    return message["output"]["error"]


def _sources(engine: rag.Engine) -> set[str]:
    return {d["source"] for d in engine.documents()}


def test_only_a_named_admin_changes_the_corpus_over_http(served, workdir):
    engine, url = served
    before = _sources(engine)
    assert SIGNED in before
    with _logged_in(url, "bob", "bob-pass-2") as bob:
        for elem_id, event, data in (
            ("corpus-remove", "click", [SIGNED]),
            ("corpus-reindex", "click", []),
            ("corpus-upload", "upload", [_upload(bob, "notes.md", NOTES)]),
        ):
            assert "only the corpus admins" in _refused(_call(bob, elem_id, event, data)), elem_id
    assert (workdir / SIGNED).is_file() and not (workdir / "corpus" / "notes.md").exists()
    assert _sources(engine) == before, "bob changed nothing"

    with _logged_in(url, "alice", "alice-pass-1") as alice:
        added = _call(alice, "corpus-upload", "upload", [_upload(alice, "notes.md", NOTES)])
        assert added["success"], added
        assert "Indexed: 1 added" in added["output"]["data"][0]
        removed = _call(alice, "corpus-remove", "click", [SIGNED])
        assert removed["success"] and f"Removed {SIGNED}: " in removed["output"]["data"][0], removed
    assert (workdir / "corpus" / "notes.md").read_bytes() == NOTES and not (workdir / SIGNED).exists()
    assert _sources(engine) == (before - {SIGNED}) | {"corpus/notes.md"}


@pytest.mark.browser
def test_a_user_who_is_not_an_admin_sees_the_corpus_tab_read_only(served, browser):  # noqa: F811
    _, url = served
    bob = browser.new_context(viewport={"width": 1400, "height": 900}).new_page()
    _login(bob, url, "bob", "bob-pass-2")
    bob.get_by_role("tab", name="Corpus").click()
    expect(bob.locator("#corpus-table")).to_contain_text(SIGNED)
    expect(bob.locator("#corpus-status")).to_have_text(read_only(("alice",)))
    bob.wait_for_timeout(1500)  # the page's load events have run (an admin's controls appear by then)
    for control in ("#corpus-upload", "#corpus-reindex", "#corpus-document", "#corpus-remove"):
        assert not bob.locator(control).is_visible(), f"{control} is shown to bob"
    assert bob.locator("#corpus-upload input[type=file]").count() == 0

    alice = browser.new_context(viewport={"width": 1400, "height": 900}).new_page()
    _login(alice, url, "alice", "alice-pass-1")
    alice.get_by_role("tab", name="Corpus").click()
    expect(alice.locator("#corpus-remove")).to_be_enabled()
    expect(alice.locator("#corpus-reindex")).to_be_enabled()
    expect(alice.locator("#corpus-status")).to_have_text("")
    assert alice.locator("#corpus-upload input[type=file]").count() == 1


@pytest.mark.parametrize(
    ("overrides", "says"),
    [
        pytest.param({"ui_admin": True, "ui_auth": LOGINS}, "set RAG_UI_ADMINS=", id="a-login-but-no-admin-named"),
        pytest.param({"ui_admin": True, "ui_auth": LOGINS, "ui_admins": "alice,carol"}, "carol, not a login", id="an-admin-with-no-login"),
        pytest.param({"ui_admin": True, "ui_admins": "alice"}, "no login to tell them by", id="admins-but-no-login"),
    ],
)
def test_serving_refuses_admin_settings_that_would_open_the_corpus_to_everyone(ready_settings, embedder, overrides, says):
    engine = rag.Engine(ready_settings.model_copy(update=overrides), embedder=embedder, llm=ScriptedChatModel())
    with pytest.raises(rag.RagError, match=says) as refused:
        ui_serve.launch(engine, port=free_port(), block=False)
    assert "\n" not in str(refused.value)
