"""With a login, the Corpus tab's actions are for the admins named in RAG_UI_ADMINS only (#29, point 4): checked on
the server against the request's login for every action, whatever the page shows. Two users from outside: alice is
an admin, bob is not."""

import uuid

import httpx
import pytest

import rag
from ui import serve as ui_serve

from .fakes import ScriptedChatModel
from .helpers import LOGINS, completed, logged_in, refused
from .servers import free_port

SIGNED = "corpus/baltic-states-poland-finland-leave-ottawa-convention.md"
NOTES = b"# Demining notes\n\nClearing one hectare of minefield took the team eleven days.\n"


def _call(http: httpx.Client, elem_id: str, event: str, data: list) -> dict:
    """Run the page's `event` handler of the component `elem_id` through the queue, as the page does (the handlers are
    not in the API, but the page's own route reaches them); Gradio's final message."""
    config = http.get("config").json()
    target = next(c["id"] for c in config["components"] if c.get("props", {}).get("elem_id") == elem_id)
    fn = next(d["id"] for d in config["dependencies"] if [target, event] in [list(t) for t in d["targets"]])
    session = uuid.uuid4().hex
    joined = http.post(
        "gradio_api/queue/join",
        json={"data": data, "fn_index": fn, "session_hash": session, "trigger_id": target, "event_data": None},
    )
    assert joined.status_code == 200, joined.text
    return completed(http, session)


def _upload(http: httpx.Client, name: str, body: bytes) -> list:
    r = http.post("gradio_api/upload", files={"files": (name, body, "text/markdown")})
    assert r.status_code == 200, r.text
    return [{"path": r.json()[0], "orig_name": name, "meta": {"_type": "gradio.FileData"}}]


def _sources(engine: rag.Engine) -> set[str]:
    return {d["source"] for d in engine.admin.documents()}


def test_only_a_named_admin_changes_the_corpus_over_http(admins_served, workdir):
    engine, url = admins_served
    before = _sources(engine)
    assert SIGNED in before
    with logged_in(url, "bob", "bob-pass-2") as bob:
        for elem_id, event, data in (
            ("corpus-remove", "click", [SIGNED]),
            ("corpus-reindex", "click", []),
            ("corpus-upload", "upload", [_upload(bob, "notes.md", NOTES)]),
        ):
            assert "only the corpus admins" in refused(_call(bob, elem_id, event, data)), elem_id
    assert (workdir / SIGNED).is_file() and not (workdir / "corpus" / "notes.md").exists()
    assert _sources(engine) == before, "bob changed nothing"

    with logged_in(url, "alice", "alice-pass-1") as alice:
        added = _call(alice, "corpus-upload", "upload", [_upload(alice, "notes.md", NOTES)])
        assert added["success"], added
        assert "Indexed: 1 added" in added["output"]["data"][0]
        removed = _call(alice, "corpus-remove", "click", [SIGNED])
        assert removed["success"] and f"Removed {SIGNED}: " in removed["output"]["data"][0], removed
    assert (workdir / "corpus" / "notes.md").read_bytes() == NOTES and not (workdir / SIGNED).exists()
    assert _sources(engine) == (before - {SIGNED}) | {"corpus/notes.md"}


@pytest.mark.parametrize(
    ("overrides", "says"),
    [
        pytest.param({"ui_admin": True, "ui_auth": LOGINS}, "set RAG_UI_ADMINS=", id="a-login-but-no-admin-named"),
        pytest.param(
            {"ui_admin": True, "ui_auth": LOGINS, "ui_admins": "alice,carol"},
            "carol, not a login",
            id="an-admin-with-no-login",
        ),
        pytest.param({"ui_admin": True, "ui_admins": "alice"}, "no login to tell them by", id="admins-but-no-login"),
    ],
)
def test_serving_refuses_admin_settings_that_would_open_the_corpus_to_everyone(
    ready_settings, embedder, overrides, says
):
    engine = rag.Engine(ready_settings.model_copy(update=overrides), embedder=embedder, llm=ScriptedChatModel())
    with pytest.raises(rag.RagError, match=says) as refused:
        ui_serve.launch(engine, port=free_port(), block=False)
    assert "\n" not in str(refused.value)
