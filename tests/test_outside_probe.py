"""Issue #29, what an outside probe of the new surfaces found, each pinned from outside (HTTP against the served app,
or `rag serve` as a real process): a network-bound chat without a login, unbounded bodies on the chat routes, a
login throttle that believed X-Forwarded-For, and exports left behind after SIGTERM."""

import concurrent.futures as cf
import json
import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest
from gradio_client import Client
from pydantic import SecretStr

import rag
from ui import serve as ui_serve

from .fakes import ScriptedChatModel
from .helpers import client_from, serve
from .servers import free_port, wait_for_port

Q = "When was the Ottawa Convention signed?"
KEY = {"Authorization": "Bearer k"}


@pytest.fixture
def make_engine(ready_settings, embedder):
    def make(**overrides):
        settings = ready_settings.model_copy(update={"llm_backend": "local", **overrides})
        return rag.Engine(settings, embedder=embedder, llm=ScriptedChatModel())

    yield make
    ui_serve.close_all()


# 1. A network-bound chat with no login: refused, unless the API alone is served.


def test_a_network_bind_with_keys_but_no_login_refuses_to_serve_the_chat(make_engine, ready_settings):
    engine = make_engine(api_keys=SecretStr("k"))
    with pytest.raises(rag.RagError, match=r"without a login.*RAG_UI_AUTH.*RAG_API_ONLY=1"):
        ui_serve.check_exposure(engine.settings, "0.0.0.0")
    port = free_port()
    with pytest.raises(rag.RagError, match="RAG_UI_AUTH"):
        ui_serve.launch(engine, host="0.0.0.0", port=port, block=False)
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/config", timeout=5)

    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}  # the README's old deployment line
    env.update(
        RAG_API_KEYS="k", RAG_INDEX_DIR=str(ready_settings.index_dir), RAG_CORPUS_DIR=str(ready_settings.corpus_dir)
    )
    run = subprocess.run(
        [sys.executable, "-m", "rag", "serve", "--host", "0.0.0.0", "--port", str(free_port())],
        env=env,
        cwd=ready_settings.corpus_dir.parent,
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = run.stderr.strip().splitlines()
    assert run.returncode != 0 and len(lines) == 1 and "RAG_UI_AUTH" in lines[0] and "--api-only" in lines[0], (
        run.stderr
    )


def test_the_api_alone_serves_v1_and_nothing_of_the_chat(make_engine):
    url = serve(make_engine(api_only=True, api_keys=SecretStr("k")), host="0.0.0.0")
    with httpx.Client(base_url=url, timeout=30) as http:
        for path in ("", "config", "gradio_api/info", "gradio_api/queue/status", "login"):
            assert http.get(path).status_code == 404, path
        join = {"data": [Q, 4, "local"], "fn_index": 0, "session_hash": "x"}
        for path in ("gradio_api/queue/join", "gradio_api/upload", "login"):
            assert http.post(path, json=join).status_code == 404, path
        assert http.get("v1/models").status_code == 401, "the keys still guard the API"
        models = http.get("v1/models", headers=KEY)
        assert models.status_code == 200 and models.json()["data"][0]["id"] == "rag"
        reply = http.post(
            "v1/chat/completions", headers=KEY, json={"model": "rag", "messages": [{"role": "user", "content": Q}]}
        )
        assert reply.status_code == 200 and "1997" in reply.json()["choices"][0]["message"]["content"]


def test_the_api_alone_on_a_network_bind_needs_keys(make_engine):
    with pytest.raises(rag.RagError, match="RAG_API_KEYS"):
        ui_serve.check_exposure(make_engine(api_only=True).settings, "0.0.0.0")
    ui_serve.check_exposure(make_engine(api_only=True).settings, "127.0.0.1")  # loopback: the API answers without keys


def test_a_network_bound_chat_with_a_login_asks_for_it(make_engine):
    url = serve(make_engine(api_keys=SecretStr("k"), ui_auth=SecretStr("alice:correct-horse")), host="0.0.0.0")
    with httpx.Client(base_url=url, timeout=30) as http:
        assert http.get("config").status_code in (401, 403)
        join = http.post("gradio_api/queue/join", json={"data": [Q, 4, "local"], "fn_index": 0, "session_hash": "x"})
        assert join.status_code in (401, 403, 404, 422), join.status_code
        assert http.post("login", data={"username": "alice", "password": "correct-horse"}).status_code == 200
        assert http.get("config").status_code == 200
        assert http.get("v1/models", headers=KEY).status_code == 200


# 3. Chat routes take any body size: capped (RAG_UI_MAX_BODY_KB) before they are read.


def _declared_only(url: str, path: str, length: int) -> bytes:
    """What the server answers a POST that declares `length` bytes of body and sends none of them."""
    parsed = httpx.URL(url)
    with socket.create_connection((parsed.host, parsed.port), timeout=10) as s:
        s.sendall(
            (
                f"POST /{path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                f"Content-Length: {length}\r\n\r\n"
            ).encode()
        )
        try:
            return s.recv(4096)
        except TimeoutError:
            return b"(no answer: waiting for the body)"


def test_oversize_bodies_on_the_chat_routes_get_413_unread(make_engine):
    url = serve(make_engine())
    five_mb = 5 * 1024 * 1024
    for path in ("gradio_api/queue/join", "gradio_api/run/predict", "login", "config"):
        assert _declared_only(url, path, five_mb).startswith(b"HTTP/1.1 413"), path
    with httpx.Client(base_url=url, timeout=30) as http:
        assert http.post("gradio_api/queue/join", content=b"x" * five_mb).status_code == 413

        def chunked(total: int):
            for _ in range(total // 65536):
                yield b"x" * 65536

        assert http.post("gradio_api/queue/join", content=chunked(five_mb)).status_code == 413

        join = json.dumps({"data": [Q, 4, "local", [], None], "fn_index": 0, "session_hash": "s1"}).encode()
        small = http.post(
            "gradio_api/queue/join", content=iter([join[:10], join[10:]]), headers={"content-type": "application/json"}
        )
        assert small.status_code == 200 and "event_id" in small.json(), "a small chunked body reaches the route whole"
    text, *_ = Client(url, verbose=False).predict(Q, 4, "local", api_name="/respond")
    assert "1997" in text, "a normal question still works"


def test_uploads_keep_their_own_limit(make_engine, tmp_path, monkeypatch):
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio-cache"))
    url = serve(make_engine(ui_admin=True, ui_max_body_kb=64, max_file_mb=1.0))
    over_the_body_cap = {"files": ("notes.txt", b"w " * 50_000, "text/plain")}  # 100 KB
    over_the_file_cap = {"files": ("big.txt", b"word " * 400_000, "text/plain")}  # 2 MB
    assert httpx.post(url + "gradio_api/upload", files=over_the_body_cap, timeout=30).status_code == 200
    assert httpx.post(url + "gradio_api/upload", files=over_the_file_cap, timeout=30).status_code == 413, "max_file_mb"


# 6. The login throttle believed X-Forwarded-For, and its per-name delay came after the check.


def _login(url: str, user: str, password: str, source: str = "127.0.0.1", forwarded: str | None = None) -> int:
    with client_from(source, url) as http:
        headers = {"X-Forwarded-For": forwarded} if forwarded else {}
        return http.post("login", data={"username": user, "password": password}, headers=headers).status_code


def test_forwarded_addresses_from_an_untrusted_peer_are_not_believed(make_engine):
    url = serve(make_engine(ui_auth=SecretStr("alice:correct-horse")))
    with cf.ThreadPoolExecutor(40) as pool:
        codes = list(pool.map(lambda i: _login(url, f"user{i}", "guess", forwarded=f"198.51.100.{i}"), range(40)))
    assert codes.count(429) >= 30 and set(codes) <= {400, 429}, codes  # 3 free tries for the one real address
    assert _login(url, "alice", "correct-horse", forwarded="203.0.113.99") == 429, "a new claimed address does not help"


def test_behind_a_trusted_proxy_each_forwarded_client_is_throttled_on_its_own(make_engine):
    url = serve(make_engine(ui_auth=SecretStr("alice:correct-horse,bob:battery-staple"), trusted_proxies="127.0.0.1"))
    codes = [_login(url, "bob", "guess", forwarded="203.0.113.7") for _ in range(6)]
    assert codes[:3] == [400] * 3 and codes[-1] == 429, codes
    spoofed = "198.51.100.1, 203.0.113.7"  # the client wrote the first; the proxy appended what it saw
    assert _login(url, "bob", "battery-staple", forwarded=spoofed) == 429, "the right-most untrusted address counts"
    assert _login(url, "alice", "correct-horse", forwarded="203.0.113.9") == 200, "bob's failures do not lock out alice"
    other = [_login(url, "x", "y", source="127.0.0.2", forwarded=f"198.51.100.{i}") for i in range(5)]
    assert other[-1] == 429, f"a peer that is not a proxy counts as itself: {other}"


@pytest.mark.heavy
def test_tries_sent_at_once_for_one_name_wait_its_delay_before_the_check(make_engine):
    url = serve(make_engine(ui_auth=SecretStr("alice:correct-horse")))
    guessers = [
        f"127.0.0.{10 + i}" for i in range(11)
    ]  # one try each: no address waits; the name's delay does the work
    with cf.ThreadPoolExecutor(len(guessers)) as pool:
        assert list(pool.map(lambda source: _login(url, "alice", "guess", source=source), guessers)) == [400] * 11

    def timed(password: str, source: str) -> tuple[int, float]:
        started = time.monotonic()
        return _login(url, "alice", password, source=source), time.monotonic() - started

    batch = [("guess", "127.0.0.30"), ("guess", "127.0.0.31"), ("correct-horse", "127.0.0.32")]  # sent at once
    with cf.ThreadPoolExecutor(len(batch)) as pool:
        results = list(pool.map(lambda t: timed(*t), batch))
    assert [code for code, _ in results] == [400, 400, 200], results  # slowed, never refused
    right = results[-1][1]  # whatever its place in the line, it waits at least the delay the 11 failures set (0.5 s)
    assert right >= 0.4, (
        f"the right password was answered after {right:.2f} s: checked beside the wrong ones, before the name's delay"
    )


# 10. Exports left after SIGTERM: removed then, and at start those of servers that are gone.


@pytest.mark.heavy
def test_sigterm_removes_the_exports_and_a_start_removes_those_of_stopped_servers(ready_settings, tmp_path):
    tmp, cache = tmp_path / "tmp", tmp_path / "gradio-cache"
    tmp.mkdir()
    gone = subprocess.Popen([sys.executable, "-c", ""])
    gone.wait()
    stale, live, unknown = (
        tmp / f"rag-exports-{gone.pid}-abc",
        tmp / f"rag-exports-{os.getpid()}-def",
        tmp / "rag-exports-old",
    )
    for folder in (stale, live, unknown):
        (folder / "c1").mkdir(parents=True)
        (folder / "c1" / "chat.md").write_text("an exported conversation")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    env.update(
        TMPDIR=str(tmp),
        GRADIO_TEMP_DIR=str(cache),
        RAG_LLM_BACKEND="extractive",
        RAG_ANSWER_MODE="retrieved",
        RAG_INDEX_DIR=str(ready_settings.index_dir),
        RAG_CORPUS_DIR=str(ready_settings.corpus_dir),
        RAG_CONVERSATIONS_DB_URL=f"sqlite:///{tmp_path / 'chats.sqlite'}",
    )
    server = subprocess.Popen(
        [sys.executable, "-m", "rag", "serve", "--port", str(port)],
        env=env,
        cwd=ready_settings.corpus_dir.parent,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for_port(port, timeout=300, proc=server)
        assert not stale.exists(), "the folder of a server that is gone is removed at start"
        assert live.exists() and unknown.exists(), (
            "a running process's folder, and one whose owner is unknown, are kept"
        )
        text, *_ = Client(f"http://127.0.0.1:{port}/", verbose=False).predict(Q, 4, "extractive", api_name="/respond")
        assert "1997" in text
        mine = list(tmp.glob(f"rag-exports-{server.pid}-*"))
        assert len(mine) == 1 and list(mine[0].rglob("*.md")) and list(mine[0].rglob("*.json")), (
            "the answer was exported"
        )
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=60) == 0, server.stderr.read()
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    assert not mine[0].exists(), "SIGTERM removed this server's exports"
    assert not [p for p in cache.rglob("*.md")], "and Gradio's copies of them"
    assert live.exists() and unknown.exists()
