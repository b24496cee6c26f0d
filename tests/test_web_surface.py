"""The served chat under load, hostile requests and faults, through gradio_client and raw HTTP on loopback."""

import concurrent.futures as cf
import os
import re
import resource
import signal
import statistics
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
from .helpers import serve
from .servers import free_port, wait_for_port

Q = "When was the Ottawa Convention signed?"


class SlowScripted(ScriptedChatModel):
    """The scripted model, pausing before each word like a slow backend; `hang` seconds before the first call."""

    delay: float = 0.05
    hang: float = 0.0

    def _stream(self, messages, *args, **kwargs):
        if self.hang:
            hang, self.hang = self.hang, 0.0
            time.sleep(hang)
        for chunk in super()._stream(messages, *args, **kwargs):
            time.sleep(self.delay)
            yield chunk


@pytest.fixture
def make_engine(ready_settings, embedder):
    def make(model, **overrides):
        return rag.Engine(
            ready_settings.model_copy(update={"llm_backend": "local", **overrides}), embedder=embedder, llm=model
        )

    yield make
    ui_serve.close_all()


@pytest.mark.heavy
def test_concurrent_sessions_complete_or_get_a_clean_busy_error(make_engine):
    limit, queue_size, sessions = 1, 2, 6  # sessions = 6 >= 3 x the concurrency limit, more than the queue holds
    url = serve(make_engine(SlowScripted(), ui_concurrency=limit, ui_queue_size=queue_size))
    Client(url, verbose=False).predict(Q, 4, "local", api_name="/respond")  # warm
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    def one(i):
        started = time.monotonic()
        try:
            text, *_ = Client(url, verbose=False).predict(Q, 4, "local", api_name="/respond")
            return "ok", time.monotonic() - started, text
        except Exception as exc:  # the client's error for a full queue
            return (
                "busy" if re.search(r"queue is full|too many|busy", str(exc), re.I) else f"error: {exc}",
                time.monotonic() - started,
                "",
            )

    with cf.ThreadPoolExecutor(sessions) as pool:
        results = list(pool.map(one, range(sessions), timeout=240))
    done = [r for r in results if r[0] == "ok"]
    print(
        f"\n{sessions} sessions: {len(done)} answered, {sum(r[0] == 'busy' for r in results)} busy; "
        f"latency p50 {statistics.median(r[1] for r in done):.2f} s, max {max(r[1] for r in done):.2f} s"
    )
    assert all(r[0] in ("ok", "busy") for r in results), results
    assert len(done) >= limit + queue_size - 1
    assert all(r[2].endswith("[1].") for r in done), [r for r in results]
    assert max(r[1] for r in done) < 60, "admitted requests finish within their budget"
    grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024
    assert grown < 300, f"memory grew by {grown:.0f} MiB"


def test_a_megabyte_question_is_refused_before_any_work(make_engine):
    engine = make_engine(ScriptedChatModel())
    calls = []
    original = engine.embedder.embed_query
    engine.embedder.embed_query = lambda text: calls.append(len(text)) or original(text)
    url = serve(engine)
    started = time.monotonic()
    text, sources, *_ = Client(url, verbose=False).predict("x" * 1_000_000, 4, "local", api_name="/respond")
    assert "limit" in text and sources == "" and time.monotonic() - started < 30
    assert calls == [] and engine.llm("local").calls == []


@pytest.mark.heavy
def test_a_hung_backend_ends_with_a_clear_error_and_frees_the_worker(make_engine):
    url = serve(make_engine(SlowScripted(hang=60.0), llm_timeout_s=3.0, ui_concurrency=1))
    client = Client(url, verbose=False)
    started = time.monotonic()
    text, *_ = client.predict(Q, 4, "local", api_name="/respond")
    assert "did not finish within 3 s" in text and time.monotonic() - started < 20
    text, *_ = Client(url, verbose=False).predict(Q, 4, "local", api_name="/respond")
    assert text.endswith("[1]."), "the next request is served"


def test_foreign_origins_get_no_cors_grant(make_engine):
    url = serve(make_engine(ScriptedChatModel()))
    for origin in ("http://evil.example", "null"):
        for method, path in (("GET", "gradio_api/info"), ("GET", "config"), ("POST", "gradio_api/queue/join")):
            r = httpx.request(
                method, url + path, headers={"Origin": origin}, json={} if method == "POST" else None, timeout=10
            )
            allowed = r.headers.get("access-control-allow-origin")
            assert allowed not in ("*", origin), (origin, path, allowed)
    same = httpx.get(url + "config", headers={"Origin": url.rstrip("/")}, timeout=10)
    assert same.status_code == 200


def test_with_auth_every_route_refuses_anonymous_and_failed_logins_are_throttled(make_engine):
    url = serve(make_engine(ScriptedChatModel(), ui_auth=SecretStr("alice:correct-horse")))
    for path in (
        "config",
        "gradio_api/info",
        "gradio_api/queue/status",
        "gradio_api/file=corpus/x.md",
        "gradio_api/upload_progress?upload_id=1",
    ):
        r = httpx.get(url + path, timeout=10)
        assert r.status_code in (401, 403, 404), (path, r.status_code)
        assert "Ottawa" not in r.text
    r = httpx.post(
        url + "gradio_api/queue/join", json={"data": [Q, 4, "local"], "fn_index": 0, "session_hash": "x"}, timeout=10
    )
    assert r.status_code in (401, 403, 404, 422), r.status_code
    with httpx.Client(base_url=url, timeout=10) as http:
        for _ in range(5):
            assert http.post("login", data={"username": "alice", "password": "guess"}).status_code != 200
        assert http.post("login", data={"username": "alice", "password": "correct-horse"}).status_code != 200, (
            "throttled"
        )


@pytest.mark.slow
def test_serving_and_answering_make_no_outbound_connection(ready_settings, tmp_path):
    """`rag serve` under strace: every connect() goes to loopback or a unix socket."""
    port = free_port()
    trace = tmp_path / "connect.trace"
    env = {
        **os.environ,
        "RAG_INDEX_DIR": str(ready_settings.index_dir),
        "RAG_CORPUS_DIR": str(ready_settings.corpus_dir),
    }
    proc = subprocess.Popen(
        [
            "strace",
            "-f",
            "-qq",
            "-e",
            "trace=connect",
            "-o",
            str(trace),
            sys.executable,
            "-m",
            "rag",
            "serve",
            "--port",
            str(port),
        ],
        cwd=ready_settings.corpus_dir.parent,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_for_port(port, timeout=300, proc=proc)
        text, *_ = Client(f"http://127.0.0.1:{port}/", verbose=False).predict(Q, 4, "local", api_name="/respond")
        assert "1997" in text
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # strace and the server with it
        proc.wait(30)
    calls = [line for line in trace.read_text().splitlines() if "connect(" in line]
    outbound = [c for c in calls if is_outbound(c)]
    assert calls and not outbound, outbound


_FAMILY = re.compile(r"\bconnect\(\d+,\s*\{sa_family=(AF_\w+)")
_INET = re.compile(r'sin_addr=inet_addr\("([^"]*)"\)')
_INET6 = re.compile(r'inet_pton\(AF_INET6,\s*"([^"]*)"')


def is_outbound(line: str) -> bool:
    """Whether one strace connect() line leaves the machine: AF_INET must go to 127.0.0.0/8, AF_INET6 to ::1 or
    ::ffff:127.x; AF_UNIX is local, and AF_UNSPEC only dissolves a socket's association (nothing is sent). Any
    other family, or an address strace could not decode, counts as outbound."""
    import ipaddress

    family = _FAMILY.search(line)
    if family is None:
        return True
    family = family.group(1)
    if family in ("AF_UNIX", "AF_UNSPEC"):
        return False
    found = {"AF_INET": _INET, "AF_INET6": _INET6}.get(family)
    addr = found.search(line) if found else None
    if addr is None:
        return True
    try:
        ip = ipaddress.ip_address(addr.group(1))
    except ValueError:
        return True
    if family == "AF_INET":
        return not (ip.version == 4 and ip.is_loopback)
    return not (ip.version == 6 and (ip.is_loopback or ip.ipv4_mapped is not None and ip.ipv4_mapped.is_loopback))


def test_strace_connect_lines_are_classified():
    """The parser the no-outbound-connection test relies on, on lines as strace 6 prints them."""
    v4 = '123 connect(3, {sa_family=AF_INET, sin_port=htons(%d), sin_addr=inet_addr("%s")}, 16) = 0'
    v6 = (
        '123 connect(3, {sa_family=AF_INET6, sin6_port=htons(443), sin6_flowinfo=htonl(0), inet_pton(AF_INET6, "%s", '
        "&sin6_addr), sin6_scope_id=0}, 28) = -1 EINPROGRESS (Operation now in progress)"
    )
    local = [
        v4 % (7860, "127.0.0.1"),
        v4 % (8000, "127.3.2.1"),
        v6 % "::1",
        v6 % "::ffff:127.0.0.1",
        (
            '123 connect(4, {sa_family=AF_UNIX, sun_path="/var/run/nscd/socket"}, 110) = -1 ENOENT '
            "(No such file or directory)"
        ),
        '123 connect(5, {sa_family=AF_UNSPEC, sa_data="\\0\\0\\0\\0\\0\\0\\0\\0\\0\\0\\0\\0\\0\\0"}, 16) = 0',
    ]
    outside = [
        v4 % (443, "93.184.216.34"),
        v4 % (53, "10.0.0.1"),
        v6 % "2001:db8::1",
        v6 % "::ffff:93.184.216.34",
        v6 % "::",
        "123 connect(6, {sa_family=AF_NETLINK, nl_pid=0, nl_groups=00000000}, 12) = 0",
        "123 connect(7, 0x7ffd5e1c, 16) = -1 EFAULT (Bad address)",
    ]
    assert [is_outbound(line) for line in local] == [False] * len(local)
    assert [is_outbound(line) for line in outside] == [True] * len(outside)
