"""Saved conversations: the store (SQLite through SQLAlchemy), owners kept apart, exports, and the chat's saving."""

import json
import sqlite3
import subprocess
import sys

import pytest

import rag
from rag.conversations import ConversationNotFound, Conversations, answer_from_dict
from rag.errors import InputError

from .fakes import ScriptedChatModel


def _answer(question: str, text: str = "The convention was signed in 1997 [1].", refused: bool = False) -> rag.Answer:
    quote = "signed in 1997"
    citation = rag.Citation(1, "c1", "corpus/a.md", "Article A", f"It was {quote} in Ottawa.", quote, 10, 24)
    return rag.Answer(
        question=question,
        standalone_question=question,
        answer=text,
        refused=refused,
        citations=[] if refused else [citation],
        timings={"first_token_ms": 12.5, "total_ms": 30.0},
        unsupported=["A sentence the check removed."],
        raw=text + " A sentence the check removed.",
        checked=[(text, True), ("A sentence the check removed.", False)],
        kind="fact",
        support="" if refused else "partly supported",
    )


@pytest.fixture
def store(tmp_path):
    s = Conversations(f"sqlite:///{tmp_path / 'chats' / 'c.sqlite'}")
    yield s
    s.close()


def test_a_conversation_keeps_every_answer_field_in_order(store):
    cid = store.start("", "When was it signed?")
    first, second = _answer("When was it signed?"), _answer("Who signed it?", "NOT FOUND", refused=True)
    store.add("", cid, first)
    store.add("", cid, second)
    got = store.get("", cid)
    assert got.title == "When was it signed?" and [t.question for t in got.turns] == [
        "When was it signed?",
        "Who signed it?",
    ]
    assert got.turns[0] == first and got.turns[1] == second  # citations, timings, checked sentences, label: all of it
    assert [(s.id, s.turns) for s in store.list("")] == [(cid, 2)]


def test_the_list_is_newest_answer_first_and_titles_are_one_line_and_bounded(store):
    a = store.start("", "first\nquestion")
    b = store.start("", "x" * 500)
    store.add("", a, _answer("q"))
    assert [s.id for s in store.list("")] == [a, b]
    assert store.get("", a).title == "first question" and len(store.get("", b).title) == 120
    with pytest.raises(InputError, match="needs a title"):
        store.rename("", a, "  \n ")


def test_owners_cannot_reach_each_others_conversations(store):
    mine = store.start("alice", "Alice's question")
    store.add("alice", mine, _answer("Alice's question"))
    assert store.list("bob") == [] and store.list("") == []
    for action in (
        lambda: store.get("bob", mine),
        lambda: store.add("bob", mine, _answer("injected")),
        lambda: store.rename("bob", mine, "taken"),
        lambda: store.delete("bob", mine),
    ):
        with pytest.raises(ConversationNotFound, match="not yours"):
            action()
    kept = store.get("alice", mine)
    assert kept.title == "Alice's question" and len(kept.turns) == 1  # nothing of Bob's attempts landed


def test_rename_and_delete(store):
    cid = store.start("", "old")
    store.add("", cid, _answer("q"))
    store.rename("", cid, "  new   title ")
    assert store.get("", cid).title == "new title"
    store.delete("", cid)
    assert store.list("") == []
    with pytest.raises(ConversationNotFound):
        store.get("", cid)
    with pytest.raises(ConversationNotFound):
        store.get("", "")
    rows = (
        sqlite3.connect(store.url.removeprefix("sqlite:///"))
        .execute("SELECT COUNT(*) FROM conversation_turns")
        .fetchone()
    )
    assert rows == (0,)  # its answers went with it


def test_markdown_export_has_numbered_sources_with_quotes_and_json_everything(store):
    cid = store.start("", "When was it signed?")
    store.add("", cid, _answer("When was it signed?"))
    store.add("", cid, _answer("Who signed it?", "NOT FOUND", refused=True))
    conversation = store.get("", cid)
    md = conversation.to_markdown()
    assert md.startswith("# When was it signed?\n")
    assert "## When was it signed?\n\nThe convention was signed in 1997 [1]." in md
    assert "1. Article A (corpus/a.md, characters 10-24): “signed in 1997”" in md
    assert "_Evidence: partly supported._" in md and "- ~~A sentence the check removed.~~" in md
    assert md.count("Sources:") == 1  # a refusal lists none
    data = json.loads(conversation.to_json())
    assert data["id"] == cid and "owner" not in data and len(data["turns"]) == 2
    assert answer_from_dict(data["turns"][0]) == conversation.turns[0]


def test_a_second_process_sees_what_the_first_saved(tmp_path):
    """Nothing is lost on a server restart: the store is the file, not the process."""
    url = f"sqlite:///{tmp_path / 'c.sqlite'}"
    code = (
        "import sys, rag; from rag.conversations import Conversations;"
        "s = Conversations(sys.argv[1]); c = s.start('alice', 'saved before the restart');"
        "s.add('alice', c, rag.Answer('q', 'q', 'a [1].', False)); print(c)"
    )
    cid = subprocess.run([sys.executable, "-c", code, url], capture_output=True, text=True, check=True).stdout.strip()
    store = Conversations(url)
    assert (
        store.get("alice", cid).turns[0].answer == "a [1]."
        and store.list("alice")[0].title == "saved before the restart"
    )


def test_an_answer_saved_by_an_older_version_still_loads():
    old = _answer("q").to_dict()
    old["citations"][0].pop("title")
    with pytest.raises(TypeError):  # a citation missing a field it needs is not silently made up
        answer_from_dict(old)
    newer = _answer("q").to_dict() | {"a_field_from_a_later_version": 1}
    newer["citations"][0]["page"] = 3
    assert answer_from_dict(newer).citations[0].quote == "signed in 1997"


def test_logins_are_several_users_each_checked(monkeypatch):
    from ui.login import Login

    settings = rag.Settings(ui_auth="alice:a-pass,bob:b:pass")
    assert settings.login == {"alice": "a-pass", "bob": "b:pass"}
    check = Login(settings.login)
    assert check("alice", "a-pass") and check("bob", "b:pass")
    assert not check("alice", "b:pass") and not check("carol", "a-pass") and not check("bob", "")
    for bad in ("alice", "alice:", ":pw", "alice:x,alice:y"):
        with pytest.raises(Exception, match="ui_auth"):
            rag.Settings(ui_auth=bad)


# -- the chat's side: each answer saved into the shown conversation, owners from the login ----------------------------
Q = "When was the Ottawa Convention signed?"


def _request(user: str | None):
    import gradio as gr

    return gr.Request(username=user)


@pytest.fixture
def chat_engine(ready_settings, embedder, tmp_path):
    settings = ready_settings.model_copy(
        update={"llm_backend": "local", "conversations_db_url": f"sqlite:///{tmp_path / 'c.sqlite'}"}
    )
    return rag.Engine(settings, embedder=embedder, llm=ScriptedChatModel())


def test_the_chat_saves_each_answer_into_the_shown_conversation(chat_engine):
    from ui.history import History

    answer_and_save = History(chat_engine).answering()
    out = list(answer_and_save(Q, [], 4, "local", [], "normal", None, _request("alice")))
    text, _, cid, kept, listed, title, md, js, status = out[-1]
    assert cid and kept == cid and listed["value"] == cid and listed["choices"] == [(f"{Q} · 1 question", cid)]
    assert title == Q and open(md["value"]).read().startswith(f"# {Q}") and json.load(open(js["value"]))["id"] == cid
    assert status == ""  # saved: nothing to say
    assert all(o[2] != cid for o in out[:-1])  # the id is given once the answer is saved, not before
    history = [{"role": "user", "content": Q}, {"role": "assistant", "content": text}]
    again = list(answer_and_save("Who wrote it?", history, 4, "local", [], "normal", cid, _request("alice")))[-1]
    assert again[2] == cid
    saved = chat_engine.conversations.get("alice", cid)
    assert [t.question for t in saved.turns] == [Q, "Who wrote it?"] and saved.turns[0].citations
    assert chat_engine.conversations.list("bob") == []


def test_a_conversation_of_another_user_is_never_continued_or_shown(chat_engine):
    """Bob's page naming Alice's conversation id (a stale or crafted browser value) starts Bob's own."""
    from ui.history import History, messages

    alices = chat_engine.conversations.start("alice", "private")
    last = list(History(chat_engine).answering()(Q, [], 4, "local", [], "normal", alices, _request("bob")))[-1]
    assert last[2] != alices and chat_engine.conversations.get("bob", last[2]).turns[0].question == Q
    assert chat_engine.conversations.get("alice", alices).turns == []
    assert messages(chat_engine.conversations.get("bob", last[2]))[0] == {"role": "user", "content": Q}


def test_exports_are_replaced_not_piled_up(store):
    from pathlib import Path

    from ui.history import export_files

    cid = store.start("", "first title")
    store.add("", cid, _answer("q"))
    md, js = export_files(store.get("", cid))
    store.rename("", cid, "second title")
    md2, js2 = export_files(store.get("", cid))
    folder = Path(md2).parent
    assert sorted(p.name for p in folder.iterdir()) == ["second-title.json", "second-title.md"]  # the old pair went
    assert (
        Path(md2).read_text().startswith("# second title")
        and json.loads(Path(js2).read_text())["title"] == "second title"
    )
    other = store.start("", "other")
    assert Path(export_files(store.get("", other))[0]).parent.parent == folder.parent  # one folder per conversation
