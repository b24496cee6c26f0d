"""What an outside probe of the served chat found, each pinned: login lock-out by strangers, unbounded histories,
anonymous uploads, odd characters, malformed requests, and corpus admin without a login."""

import logging
import time

import httpx
import pytest
from pydantic import SecretStr

import rag
from ui import serve as ui_serve
from ui.chat import MODEL_ERROR, respond
from ui.login import Throttle

from .fakes import ReplayChatModel, ScriptedChatModel
from .helpers import client_from, serve
from .servers import free_port

Q = "When was the Ottawa Convention signed?"


@pytest.fixture
def make_engine(ready_settings, embedder):
    def make(model=None, **overrides):
        settings = ready_settings.model_copy(update={"llm_backend": "local", **overrides})
        return rag.Engine(settings, embedder=embedder, llm=model or ScriptedChatModel())

    yield make
    ui_serve.close_all()


# 1. Login: a stranger's wrong guesses slow only the stranger.


def test_wrong_passwords_from_one_address_do_not_lock_out_another(make_engine):
    url = serve(make_engine(ui_auth=SecretStr("alice:correct-horse")))
    with client_from("127.0.0.2", url, timeout=30) as attacker, client_from("127.0.0.3", url, timeout=30) as alice:
        for _ in range(6):
            attacker.post("login", data={"username": "alice", "password": "guess"})
        refused = attacker.post("login", data={"username": "alice", "password": "correct-horse"})
        assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1, "the guessing address must wait"
        ok = alice.post("login", data={"username": "alice", "password": "correct-horse"})
        assert ok.status_code == 200, ok.text
        assert alice.get("gradio_api/info").status_code == 200, "and is logged in"


@pytest.mark.heavy
def test_the_wait_grows_with_each_failure(make_engine):
    url = serve(make_engine(ui_auth=SecretStr("alice:correct-horse")))
    waits = []
    with client_from("127.0.0.4", url, timeout=30) as http:
        for _ in range(3):  # the first failures cost nothing
            assert http.post("login", data={"username": "x", "password": "y"}).status_code == 400
        for _ in range(2):
            r = http.post("login", data={"username": "x", "password": "y"})
            assert r.status_code == 429
            waits.append(int(r.headers["retry-after"]))
            time.sleep(waits[-1] + 0.2)
            assert http.post("login", data={"username": "x", "password": "y"}).status_code == 400
    assert waits[1] > waits[0] >= 1, waits


def test_throttle_doubles_and_forgets():
    t = Throttle(free=2, base=1.0, cap=8.0, window=100.0)
    assert [t.delay(n) for n in range(7)] == [0, 0, 1, 2, 4, 8, 8]
    for now in (0.0, 1.0, 2.0):
        t.failed("a", now=now)
    assert t.wait("a", now=2.5) == pytest.approx(1.5) and t.wait("b", now=2.5) == 0  # 3 failures: 2 s after the last
    assert t.wait("a", now=200.0) == 0, "forgotten after the window"
    t.failed("c", now=0)
    t.failed("c", now=0)
    t.failed("c", now=0)
    t.succeeded("c")
    assert t.wait("c", now=0) == 0


# 2. Histories: bounded before any model work; model failures shown neutrally.


def test_an_oversize_history_is_refused_before_any_model_work(make_engine):
    model = ReplayChatModel(["should not be used"])
    engine = make_engine(model)
    started = time.monotonic()
    with pytest.raises(rag.RagError, match="start a new chat"):
        engine.ask(Q, history=[("x" * 12_000, "an answer")])
    with pytest.raises(rag.RagError, match="start a new chat"):
        engine.ask(Q, history=[("a question about mines?", "An answer [1].")] * 60)
    with pytest.raises(rag.RagError, match="start a new chat"):
        engine.ask(Q, history=[("q", "a" * 200_000)])
    assert model.calls == [] and time.monotonic() - started < 2
    text, _ = list(respond("And then?",
                           [{"role": "user", "content": "y" * 200_000}, {"role": "assistant", "content": "ok"}],
                           4, "local", engine=engine))[-1]  # fmt: skip
    assert "start a new chat" in text and model.calls == []


def test_every_earlier_turn_reaching_the_model_is_clipped(make_engine):
    model = ScriptedChatModel()
    engine = make_engine(model)
    long_question = "Tell me about the convention " + "and its history " * 110  # under the question limit, ~550 tokens
    engine.ask("How many joined it?", history=[(long_question, "It bans anti-personnel mines " * 60)] * 3)
    condense_prompt = model.calls[0][-1].content
    assert len(condense_prompt) < 2500, len(condense_prompt)
    assert condense_prompt.count("User: ") == 2, "the last two turns only"


def test_a_model_failure_shows_a_neutral_message(make_engine, caplog):
    class Failing(ScriptedChatModel):
        def _stream(self, messages, *args, **kwargs):
            raise rag.errors.ModelError(
                "local LLM refused the request: request (50593 tokens) exceeds the available context size"
            )
            yield

    with caplog.at_level(logging.WARNING):
        text, _ = list(respond(Q, [], 4, "local", engine=make_engine(Failing())))[-1]
    assert text == MODEL_ERROR and "50593" not in text
    assert "50593" in caplog.text, "the operator sees the detail in the log"


# 3. Uploads: refused unless the corpus admin is on, and then only after login.


def test_anonymous_uploads_are_refused_and_nothing_is_written(make_engine, tmp_path, monkeypatch):
    cache = tmp_path / "gradio-cache"
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(cache))
    url = serve(make_engine())
    r = httpx.post(url + "gradio_api/upload", files={"files": ("x.txt", b"hosted by you", "text/plain")}, timeout=30)
    assert r.status_code == 403, r.status_code
    assert not [p for p in cache.rglob("*") if p.is_file()]


def test_uploads_need_the_login_when_admin_is_on(make_engine, tmp_path, monkeypatch):
    cache = tmp_path / "gradio-cache"
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(cache))
    url = serve(make_engine(ui_admin=True, ui_auth=SecretStr("alice:correct-horse"), ui_admins="alice"))
    files = {"files": ("notes.txt", b"Field notes.", "text/plain")}
    assert httpx.post(url + "gradio_api/upload", files=files, timeout=30).status_code in (401, 403)
    assert not [p for p in cache.rglob("*") if p.is_file()]
    with httpx.Client(base_url=url, timeout=30) as http:
        assert http.post("login", data={"username": "alice", "password": "correct-horse"}).status_code == 200
        assert http.post("gradio_api/upload", files=files).status_code == 200
    assert [p for p in cache.rglob("*") if p.is_file()], "a logged-in admin's upload lands in the (cleaned-up) cache"


def test_uploaded_files_are_cleaned_up(make_engine):
    from ui.app import build_app

    assert build_app(make_engine(ui_admin=True)).delete_cache == (3600, 3600)


# 5. Odd input: normalised or refused with a clear message; malformed requests get a 4xx.


def test_a_lone_surrogate_in_the_question_is_normalised(make_engine):
    engine = make_engine()
    answer = engine.ask("When was the Ottawa Convention \ud800signed?")
    assert not answer.refused and "1997" in answer.answer and "\ud800" not in answer.question
    text, _ = list(respond("When was it signed?\ud800",
                           [{"role": "user", "content": "Hi \udfff"}, {"role": "assistant", "content": "Hello."}],
                           4, "local", engine=engine))[-1]  # fmt: skip
    assert text and not text.startswith("Sorry")


def test_malformed_requests_to_every_route_get_a_4xx(make_engine):
    url = serve(make_engine())
    bodies = [
        b"",
        b"{",
        b"[]",
        b'{"data": "x"}',
        b'{"data": [null, null, null]}',
        b'{"data": ["\\ud800", 4, "local"]}',
        b"\xff\xfe",
    ]
    routes = [
        "gradio_api/call/respond", "gradio_api/call/v2/respond", "gradio_api/call/v2/x", "gradio_api/queue/join",
        "gradio_api/run/respond", "gradio_api/api/respond", "gradio_api/upload", "gradio_api/component_server",
        "gradio_api/process_recording", "gradio_api/cancel", "gradio_api/reset", "login", "gradio_api/queue/data",
    ]  # fmt: skip
    failures = []
    with httpx.Client(base_url=url, timeout=30) as http:
        for route in routes:
            for body in bodies:
                r = http.post(route, content=body, headers={"content-type": "application/json"})
                if r.status_code >= 500:
                    failures.append((route, body, r.status_code))
        for route in ("gradio_api/call/respond/unknown", "gradio_api/call/v2/respond/unknown",
                      "gradio_api/queue/data?session_hash=x", "gradio_api/upload_progress?upload_id=1",
                      "gradio_api/file=nothing"):  # fmt: skip
            r = http.get(route)  # an unknown stream used to crash its connection half-way
            if not 400 <= r.status_code < 500:
                failures.append((route, "GET", r.status_code))
    assert not failures, failures


# 6. Corpus admin without a login.


def test_admin_without_login_does_not_start_outside_loopback(make_engine):
    with pytest.raises(rag.RagError, match="RAG_UI_AUTH"):
        ui_serve.launch(make_engine(ui_admin=True), host="0.0.0.0", port=free_port(), block=False)


def test_admin_without_login_on_loopback_warns_at_start_and_in_the_corpus_tab(make_engine, caplog):
    with caplog.at_level(logging.WARNING):
        url = serve(make_engine(ui_admin=True))
    assert "without a login" in caplog.text
    config = httpx.get(url + "config", timeout=30).json()
    warnings = [c for c in config["components"] if c.get("props", {}).get("elem_id") == "admin-warning"]
    assert warnings and "anyone who can reach this page can change the corpus" in warnings[0]["props"]["value"]
    from ui.app import build_app

    with_login = build_app(make_engine(ui_admin=True, ui_auth=SecretStr("a:b"))).get_config_file()
    assert not [c for c in with_login["components"] if c.get("props", {}).get("elem_id") == "admin-warning"]
