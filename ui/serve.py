"""Serving the page and the OpenAI-compatible API with safe defaults: loopback, one bounded set of answer lanes for
both, queue-skipping REST closed, request bodies capped, private paths blocked, uploads only for the corpus admin,
and a login throttle; or, with `api_only`, the API alone."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import os
import signal
import threading
import time
from pathlib import Path

import gradio as gr
from starlette.middleware import Middleware

import rag
from ui import exports
from ui.api import ApiRoutes, build_api
from ui.app import build_app
from ui.corpus import OPEN_ADMIN
from ui.lanes import Lanes
from ui.login import Login, LoginThrottle
from ui.render import CSS, PAGE_JS

log = logging.getLogger(__name__)

_SERVED: list[rag.Engine] = []
_API_SERVERS: list[tuple] = []  # the API-only servers this process runs: (uvicorn.Server, its thread)


def launch(engine: rag.Engine, host: str = "127.0.0.1", port: int = 7860, block: bool = True, checked: bool = False):
    """Serve the app for `engine` (holding its embedded index against other writers while it runs); `checked`: the
    caller already ran `check_exposure` (and warned)."""
    s = engine.settings
    if not checked:
        check_exposure(s, host)
    engine.hold_for_serving()
    _SERVED.append(engine)
    _start_reading(engine)
    lanes = Lanes(s.ui_concurrency, s.ui_queue_size)  # the chat and the API take turns on the same model
    api = build_api(engine, lanes, open_without_key=is_loopback(host))
    if s.api_only:
        return _serve_api(
            ApiRoutes(_not_found, api=api, max_body=s.api_max_body_kb * 1024), host, port, s.proxies, block
        )
    exports.remove_stale()  # export folders of servers that are gone (killed, or stopped before removing theirs)
    demo = build_app(engine, lanes=lanes)
    demo.queue(max_size=s.ui_queue_size, default_concurrency_limit=s.ui_concurrency, api_open=False)
    login = s.login
    blocked = [str(s.index_dir.resolve()), str(Path(".env").resolve()), str(s.feedback_file.resolve())]
    for url in (s.record_url, s.conversations_url):  # the record store and the saved conversations, with their logs
        if url.startswith("sqlite:///"):
            blocked += [url.removeprefix("sqlite:///") + suffix for suffix in ("", "-wal", "-shm", "-journal")]
    middleware = [
        Middleware(ApiRoutes, api=api, max_body=s.api_max_body_kb * 1024),
        Middleware(BodyLimit, limit=s.ui_max_body_kb * 1024),
        Middleware(ErrorShield),
        Middleware(UploadGate, open=s.ui_admin),
    ]
    if login:
        middleware.append(Middleware(LoginThrottle))
    if block and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, signal.default_int_handler)  # stopped as by Ctrl+C: Gradio closes its server
    with _forwarded_for_believed_from(s.proxies):
        served = demo.launch(
            server_name=host,
            server_port=port,
            auth=Login(login) if login else None,
            app_kwargs={"middleware": middleware},
            max_file_size=f"{int(s.max_file_mb)}mb",
            blocked_paths=blocked,
            show_error=False,
            prevent_thread_lock=not block,
            quiet=True,
            footer_links=[],
            css=CSS,
            js=PAGE_JS,
            ssr_mode=False,
            mcp_server=False,
        )
    if block:  # stopped (Ctrl+C, SIGTERM): this process's exported conversations go with it
        exports.remove()
    return served


@contextlib.contextmanager
def _forwarded_for_believed_from(proxies: tuple[str, ...]):
    """While Gradio makes its server: uvicorn replaces each request's client address by its X-Forwarded-For when the
    peer is in FORWARDED_ALLOW_IPS (127.0.0.1 and ::1 when unset, so anyone on this machine could claim any address to
    the login throttle); set it to the configured proxies, none by default. uvicorn then takes the right-most address
    that is not one of them (what a proxy appended, not what the client wrote)."""
    before = os.environ.get("FORWARDED_ALLOW_IPS")
    os.environ["FORWARDED_ALLOW_IPS"] = ",".join(proxies)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("FORWARDED_ALLOW_IPS", None)
        else:
            os.environ["FORWARDED_ALLOW_IPS"] = before


def check_exposure(settings: rag.Settings, host: str) -> None:
    """Refuse to serve on an address other machines can reach the chat without a login (anyone would read, rename
    and delete everyone's saved conversations), the API alone without keys, or the corpus admin actions without a
    login; on loopback, warn about open admin actions."""
    if not is_loopback(host) and not settings.api_only and settings.login is None:
        raise rag.RagError(
            f"serving the chat on {host} without a login would let anyone who reaches it read, rename and delete "
            "the saved conversations; set RAG_UI_AUTH=user:password, or serve the HTTP API alone "
            "(RAG_API_ONLY=1 or `rag serve --api-only`)"
        )
    if not is_loopback(host) and settings.api_only and not settings.keys:
        raise rag.RagError(
            f"serving the HTTP API alone on {host} without keys would answer nobody (or, were it open, anyone); "
            "set RAG_API_KEYS=key1,key2, or serve on 127.0.0.1"
        )
    if settings.ui_admin and settings.login is None and not settings.api_only:
        if not is_loopback(host):
            raise rag.RagError(
                f"RAG_UI_ADMIN=1 without a login would let anyone who reaches {host} change the corpus; "
                "set RAG_UI_AUTH=user:password, or serve on 127.0.0.1"
            )
        log.warning("RAG_UI_ADMIN=1 without a login on %s: %s", host, OPEN_ADMIN)
    check_admins(settings)


def check_admins(settings: rag.Settings) -> None:
    """With a login, the corpus admin actions are for the logins named in RAG_UI_ADMINS only: refuse to serve with
    the actions on and nobody named (every user would have been an admin), or naming someone with no login."""
    if settings.api_only:
        return
    login = settings.login
    if settings.admins and login is None:
        raise rag.RagError(
            "RAG_UI_ADMINS names corpus admins but there is no login to tell them by; set RAG_UI_AUTH=user:password"
        )
    if settings.ui_admin and login is not None and not settings.admins:
        raise rag.RagError(
            "RAG_UI_ADMIN=1 with a login needs the admins named, or every user could change the corpus for everyone; "
            "set RAG_UI_ADMINS=alice[,bob] to logins of RAG_UI_AUTH"
        )
    if login is not None and (unknown := [a for a in settings.admins if a not in login]):
        raise rag.RagError(
            f"RAG_UI_ADMINS names {', '.join(unknown)}, not a login of RAG_UI_AUTH; name logins that exist"
        )
    if settings.admins and not settings.ui_admin:
        log.warning("RAG_UI_ADMINS is set but RAG_UI_ADMIN is not: the Corpus tab's actions are off for everyone")


def _serve_api(app, host: str, port: int, proxies: tuple[str, ...], block: bool):
    """The HTTP API alone on uvicorn (the server Gradio would start; X-Forwarded-For believed from `proxies` only):
    blocking, stopped by Ctrl+C or SIGTERM; or in a thread until `close_all`."""
    import uvicorn

    config = uvicorn.Config(
        app, host=host, port=port, log_level="warning", lifespan="off", forwarded_allow_ips=list(proxies)
    )
    server = uvicorn.Server(config)
    if block:
        server.run()
        return None
    thread = threading.Thread(target=server.run, name="rag-api", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise rag.RagError(f"the HTTP API could not start on {host}:{port}; is the port in use?")
        time.sleep(0.01)
    _API_SERVERS.append((server, thread))
    return server


async def _not_found(scope, receive, send) -> None:
    """Everything but /v1 when the API is served alone."""
    if scope["type"] == "http":
        await _json(send, 404, {"detail": "not found: this server serves the HTTP API (/v1) only"})
    elif scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1008})


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class ErrorShield:
    """ASGI middleware: a request that makes a route fail (Gradio's routes raise or answer 500 on some malformed
    bodies: a lone surrogate, `data` of the wrong shape) gets a one-line 4xx instead, and the log gets the detail."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # The start of a response is held until its first body part, and a first part that is Gradio's error event
        # (its streams answer an unknown session or event with 200, that event, then a crash) is held too: if the
        # route then fails, the client gets a clean 4xx instead of a broken stream.
        held: list[dict] = []
        sent, replaced = False, False

        async def guarded(message) -> None:
            nonlocal sent, replaced
            if message["type"] == "http.response.start" and message["status"] == 500:  # not 503: a full queue says so
                replaced = True
                log.warning("%s %s answered %d; sent 400 instead", scope["method"], scope["path"], message["status"])
                await _json(send, 400, {"detail": "malformed request"})
                return
            if replaced:
                return  # the body of the replaced 500
            held.append(message)
            if message["type"] == "http.response.body" and not (
                len(held) == 2 and _error_event(message.get("body", b""))
            ):
                for m in held:
                    await send(m)
                held.clear()
                sent = True

        try:
            await self.app(scope, receive, guarded)
        except Exception as exc:
            if sent or replaced:
                raise
            status = getattr(exc, "status_code", None) or getattr(exc.__cause__, "status_code", 400)
            status = status if isinstance(status, int) and 400 <= status < 500 else 400
            log.warning(
                "%s %s failed (%s: %s); sent %d", scope["method"], scope["path"], type(exc).__name__, exc, status
            )
            await _json(send, status, {"detail": "not found" if status == 404 else "malformed request"})
            return
        for m in held:  # a response that ended on its held first part
            await send(m)


def _error_event(chunk: bytes) -> bool:
    """Whether a stream's first part is Gradio's report of a failure (its two formats)."""
    return chunk.startswith(b"event: error\n") or b'"msg":"unexpected_error"' in chunk[:200]


class UploadGate:
    """ASGI middleware: file uploads are refused (403, the body never read) unless the corpus admin actions are on."""

    def __init__(self, app, open: bool) -> None:  # noqa: A002 (the middleware's own keyword)
        self.app, self.open = app, open

    async def __call__(self, scope, receive, send) -> None:
        if not self.open and _is_upload(scope):
            await _json(send, 403, {"detail": "uploads are turned off on this server"})
            return
        await self.app(scope, receive, send)


def _is_upload(scope) -> bool:
    return scope["type"] == "http" and scope["method"] == "POST" and scope["path"].rstrip("/").endswith("/upload")


class BodyLimit:
    """ASGI middleware: a request body over `limit` bytes gets 413 before the route reads any of it (a declared length
    at once, unread; a chunked body as soon as it passes the limit, buffered up to it). Uploads keep their own limit
    (`max_file_mb`, checked by Gradio as the file streams in); /v1 has its own before this."""

    def __init__(self, app, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or _is_upload(scope):
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        too_big = {"detail": f"the request body is over {self.limit // 1024} KB"}
        length = headers.get(b"content-length")
        if length is not None:
            if not length.isdigit():
                await _json(send, 400, {"detail": "malformed request"})
            elif int(length) > self.limit:
                await _json(send, 413, too_big)
            else:
                await self.app(scope, receive, send)  # the server delivers no more than the declared length
            return
        if b"chunked" not in headers.get(b"transfer-encoding", b"").lower():
            await self.app(scope, receive, send)  # no body
            return
        parts, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            parts.append(message.get("body", b""))
            size += len(parts[-1])
            if size > self.limit:
                await _json(send, 413, too_big)
                return
            more = message.get("more_body", False)
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(parts), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


async def _json(send, status: int, payload: dict) -> None:
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": json.dumps(payload).encode()})


def close_all() -> None:
    """Stop every app this process serves and release their indexes (tests, and a clean shutdown)."""
    gr.close_all()
    while _API_SERVERS:
        server, thread = _API_SERVERS.pop()
        server.should_exit = True
        thread.join(timeout=10)
    exports.remove()
    while _SERVED:
        _SERVED.pop().release_serving()


def _start_reading(engine: rag.Engine) -> None:
    """Have the documents read whole in the background when they are answered that way (retrieved until then)."""
    try:
        if engine.has_index():
            way = engine.way(for_question=True)
            log.info("answering from the %s: %s", way.name, way.why)
    except rag.RagError as exc:  # the index or the model is unavailable: the first question says so
        log.warning("could not choose how to answer: %s", exc)
