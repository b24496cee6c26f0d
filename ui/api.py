"""The OpenAI-compatible HTTP API that `rag serve` serves beside the chat, through the same engine and lanes.

`GET /v1/models`, `POST /v1/chat/completions` (streamed as server-sent events or not) and `POST /v1/search`. The
last user message is the question and the earlier user/assistant turns are the conversation (follow-ups are
rewritten from them); the reply's message is the checked answer, and the `rag` field carries what OpenAI's shape has
no room for: the checked answer, whether it is a refusal, the citations (source, title, quote, character offsets,
page of a PDF), the sentences the check removed, and the timings. Errors are OpenAI-shaped JSON (`{"error": {...}}`)
with 4xx codes.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from typing import Any, Literal, TypeVar

import anyio
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException

import rag
from ui.lanes import Busy, Lanes

log = logging.getLogger(__name__)

PREFIX = "/v1"
T = TypeVar("T")
_DONE = object()
_WAIT_S = 600.0  # longest a request waits for a lane before it is told the server is busy


class ApiError(Exception):
    """An error the API answers with, in OpenAI's shape."""

    def __init__(
        self,
        status: int,
        message: str,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
    ):  # noqa: A002
        super().__init__(message)
        self.status, self.message, self.type, self.code, self.param = status, message, type, code, param

    def response(self, headers: dict[str, str] | None = None) -> JSONResponse:
        body = {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}
        return JSONResponse(body, status_code=self.status, headers=headers)


# -- what the API takes and gives (these models are also its OpenAPI description) ---------------------------------


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorDetail


class TextPart(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: Literal["text"]
    text: str


class Message(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return " ".join(p.text for p in self.content)
        return self.content or ""


class ChatRequest(BaseModel):
    """OpenAI's chat completion request; sampling fields are accepted and ignored (answers are greedy and checked)."""

    model_config = ConfigDict(extra="allow")
    model: str
    messages: list[Message] = Field(min_length=1)
    stream: bool = False
    n: int | None = None
    sources: list[str] | None = Field(
        None,
        max_length=100,
        description="extension: answer only from these documents (sources as /v1/search gives them)",
    )


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    query: str = Field(min_length=1)
    k: int | None = Field(None, ge=1, le=20)
    mode: Literal["hybrid", "dense", "lexical"] | None = None
    sources: list[str] | None = Field(None, max_length=100, description="only chunks of these documents")


class RagExtension(BaseModel):
    """The checked answer and what it rests on."""

    answer: str
    refused: bool
    citations: list[rag.Citation]
    unsupported: list[str] = Field(description="sentences the model wrote that the citation check removed")
    standalone_question: str
    kind: str
    support: str = Field(
        description="well supported, partly supported or weak evidence (from the citation check); empty for a refusal"
    )
    way: str = Field(
        "retrieved passages", description="what the model was shown: the whole corpus, or retrieved passages"
    )
    timings: dict[str, float]


class ReplyMessage(BaseModel):
    role: Literal["assistant"]
    content: str


class Choice(BaseModel):
    index: int
    message: ReplyMessage
    finish_reason: str


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    choices: list[Choice]
    rag: RagExtension


class ModelCard(BaseModel):
    id: str
    object: Literal["model"]
    created: int
    owned_by: str


class ModelList(BaseModel):
    object: Literal["list"]
    data: list[ModelCard]


class SearchResponse(BaseModel):
    query: str
    hits: list[rag.Hit]


_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse, "description": text}
    for code, text in {
        400: "a malformed request",
        401: "no or a wrong API key",
        404: "an unknown model or path",
        413: "a body over the size limit",
        503: "every answer slot is busy, or a service the answer needs does not answer",
    }.items()
}


# -- the app ------------------------------------------------------------------------------------------------------


def build_api(engine: rag.Engine, lanes: Lanes, *, open_without_key: bool) -> FastAPI:
    """The API app over `engine`; answers take a lane of `lanes` (shared with the chat). Without configured keys it
    answers only when `open_without_key` (the server is bound to loopback)."""
    s = engine.settings
    app = FastAPI(
        title="rag",
        version="1",
        summary="Answers from the indexed documents, with checked citations (OpenAI-compatible).",
        openapi_url=f"{PREFIX}/openapi.json",
        docs_url=None,
        redoc_url=None,
    )
    guarded = [Depends(_key_check([k.encode() for k in s.keys], open_without_key))]
    _add_error_handlers(app)
    _add_model_routes(app, s.api_model, guarded)
    _add_search_route(app, engine, guarded)
    _add_chat_route(app, engine, lanes, s.api_model, guarded)
    return app


def _key_check(keys: list[bytes], open_without_key: bool) -> Callable[[Request], None]:
    """The dependency that lets a request through with one of `keys` as its bearer token (or with none, when there
    are no keys and the server is `open_without_key`)."""

    def authorised(request: Request) -> None:
        if not keys:
            if open_without_key:
                return
            raise ApiError(
                401,
                "this server has no API keys: set RAG_API_KEYS to use the API on this address",
                code="invalid_api_key",
            )
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not any(hmac.compare_digest(given.strip().encode(), k) for k in keys):
            raise ApiError(401, "missing or wrong API key: send Authorization: Bearer <key>", code="invalid_api_key")

    return authorised


def _add_error_handlers(app: FastAPI) -> None:
    """Every error answered in OpenAI's shape: ours, a malformed request (400), FastAPI's own (a 4xx), any other."""

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return exc.response({"Retry-After": "5"} if exc.status == 503 else None)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        if first.get("type") == "json_invalid":
            return ApiError(400, "the body is not valid JSON").response()
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        message = f"{where or 'body'}: {first.get('msg')}"
        return ApiError(400, message, param=where or None).response()

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> JSONResponse:
        status = exc.status_code if 400 <= exc.status_code < 500 else 400
        return ApiError(status, str(exc.detail), code="not_found" if status == 404 else None).response()

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> JSONResponse:
        log.exception("API request failed")
        return ApiError(500, "the server failed on this request; see its log", type="server_error").response()


def _add_model_routes(app: FastAPI, model: str, guarded: list) -> None:
    """`GET /v1/models` and `GET /v1/models/{name}`: the one model, `model`."""

    @app.get(f"{PREFIX}/models", response_model=ModelList, responses=_ERRORS, dependencies=guarded)
    def models() -> dict:
        return {"object": "list", "data": [_card(model)]}

    @app.get(f"{PREFIX}/models/{{name}}", response_model=ModelCard, responses=_ERRORS, dependencies=guarded)
    def model_card(name: str) -> dict:
        if name != model:
            raise _unknown_model(name, model)
        return _card(model)


def _add_search_route(app: FastAPI, engine: rag.Engine, guarded: list) -> None:
    """`POST /v1/search`: the passages `engine` retrieves for a query."""
    s = engine.settings

    @app.post(f"{PREFIX}/search", response_model=SearchResponse, responses=_ERRORS, dependencies=guarded)
    def search(body: SearchRequest) -> dict:
        query = body.query.strip()
        if not query:
            raise ApiError(400, "the query is empty; send words to search for", param="query")
        if len(query) > s.max_question_chars:
            raise ApiError(
                400, f"the query is {len(query)} characters long; the limit is {s.max_question_chars}", param="query"
            )
        try:
            hits = engine.search(query, k=body.k, mode=body.mode, sources=body.sources)
        except rag.RagError as exc:
            raise _refused(exc, "sources") from None
        return {"query": query, "hits": [h.to_dict() for h in hits]}


def _add_chat_route(app: FastAPI, engine: rag.Engine, lanes: Lanes, model: str, guarded: list) -> None:
    """`POST /v1/chat/completions`: the checked answer, whole or streamed, generated on a lane of `lanes`."""

    @app.post(
        f"{PREFIX}/chat/completions",
        response_model=ChatCompletion,
        responses=_ERRORS
        | {
            200: {
                "content": {"text/event-stream": {}},
                "description": "the answer, or its stream when `stream` is true",
            }
        },
        dependencies=guarded,
    )
    async def chat_completions(body: ChatRequest, request: Request):
        question, history, sources = _checked_request(engine, body, model)
        ticket = await _lane(lanes, request)
        answer = _Answering(
            engine, question, history, rag.QueryParams(sources=sources), ticket, asyncio.get_running_loop()
        )
        if not body.stream:
            return await _whole(request, answer, model)
        return await _streamed(request, answer, model)


def _checked_request(
    engine: rag.Engine, body: ChatRequest, model: str
) -> tuple[str, list[tuple[str, str]], list[str] | None]:
    """The question, the conversation and the sources of a chat request, checked before it waits for a lane."""
    if body.model != model:
        raise _unknown_model(body.model, model)
    if body.n not in (None, 1):
        raise ApiError(400, "n must be 1: one checked answer per request", param="n")
    question, history = _conversation(body.messages)
    try:
        question, history = engine.check_input(question, history)
    except rag.RagError as exc:
        raise _refused(exc, "messages") from None
    try:
        sources = engine.check_sources(body.sources)
    except rag.RagError as exc:
        raise _refused(exc, "sources") from None
    return question, history, sources


async def _whole(request: Request, answer: _Answering, model: str) -> dict:
    """The answer as one chat completion, once it is checked."""
    try:
        final = await _unless_gone(request, answer.result())
    finally:
        answer.stop()  # done, or the client gave up: the model stops at its next token and the lane comes free
    return _completion(final, model)


async def _streamed(request: Request, answer: _Answering, model: str) -> StreamingResponse:
    """The answer as server-sent events, once its first event has come."""
    try:  # an error before the first event (the model failed to start) is still a status
        first = await _unless_gone(request, answer.next())
    except BaseException:
        answer.stop()
        raise
    if isinstance(first, Exception):
        answer.stop()
        raise _mapped(first)
    return StreamingResponse(
        _sse(answer, first, model), media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
    )


def _gone() -> ApiError:
    return ApiError(499, "the client closed the request", code="client_closed")  # nobody reads it: for the log


async def _disconnected(request: Request) -> None:
    """Return once the client has gone (the body was read before: what comes next is the disconnect)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def _unless_gone(request: Request, work: Coroutine[Any, Any, T]) -> T:
    """What `work` gives, unless the client disconnects first: then `work` is cancelled and `_gone()` raised."""
    task, gone = asyncio.ensure_future(work), asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({task, gone}, return_when=asyncio.FIRST_COMPLETED)
    except BaseException:
        task.cancel()
        raise
    finally:
        gone.cancel()
    if not task.done():
        task.cancel()
        log.info("the client of %s went away; its answer is stopped", request.url.path)
        raise _gone()
    return task.result()


async def _lane(lanes: Lanes, request: Request):
    """A lane's ticket, waited for on a worker thread while watching the client: a client that goes away gives up
    its place in the line (and a lane taken just as it went is given back)."""
    cancel = threading.Event()
    waiting = asyncio.ensure_future(anyio.to_thread.run_sync(lanes.acquire, _WAIT_S, cancel))
    gone = asyncio.ensure_future(_disconnected(request))
    went = False
    try:
        await asyncio.wait({waiting, gone}, return_when=asyncio.FIRST_COMPLETED)
        went = gone.done()
    finally:
        gone.cancel()
        if went or not waiting.done():
            cancel.set()  # the waiting thread lets go within a poll
    try:
        ticket = await waiting
    except Busy as exc:
        if not went:
            raise ApiError(503, str(exc), type="server_error", code="busy") from None
        ticket = None
    if went:
        if ticket is not None:
            ticket.release()
        log.info("the client of %s went away while waiting for an answer slot", request.url.path)
        raise _gone()
    return ticket


def _card(model: str) -> dict:
    return {"id": model, "object": "model", "created": 0, "owned_by": "rag"}


def _unknown_model(name: str, model: str) -> ApiError:
    return ApiError(
        404, f"the model {name!r} does not exist here; use {model!r}", code="model_not_found", param="model"
    )


def _conversation(messages: list[Message]) -> tuple[str, list[tuple[str, str]]]:
    """The last user message, and the earlier (user, assistant) turns; system and tool messages are ignored (the
    answering instructions are the server's)."""
    said = [(m.role, m.text()) for m in messages if m.role in ("user", "assistant")]
    if not said or said[-1][0] != "user" or messages[-1].role != "user":
        raise ApiError(400, "the last message must be the user's question", param="messages")
    return said[-1][1], rag.turns(said[:-1])


_CLIENTS_FAULT = (rag.InputError, rag.ConfigError)  # 400: the request asks for what cannot be (a source not indexed)
_UNAVAILABLE = (rag.StoreUnavailableError, rag.ConversationsUnavailableError)  # 503: a service does not answer


def _refused(exc: rag.RagError, param: str) -> ApiError:
    """A check of the request that failed: 400 when the input is the client's fault (a source that is not indexed);
    a service that does not answer is the server's (503, neutral text: `_mapped`), which a client may retry."""
    if isinstance(exc, _CLIENTS_FAULT):
        return ApiError(400, str(exc), param=param)
    return _mapped(exc)


def _mapped(exc: Exception) -> ApiError:
    """The status by the error's type: the client's fault is 400 with its message; a service that does not answer
    is 503 with neutral text (its message names internal addresses: logged); any other error of the library is 503,
    with its message when that may be shown (`for_user`), else neutral text, as is any other exception."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, _CLIENTS_FAULT):
        return ApiError(400, str(exc))
    if isinstance(exc, rag.RagError) and exc.for_user:
        return ApiError(503, str(exc), type="server_error")
    log.warning("answer failed: %s: %s", type(exc).__name__, exc)
    if isinstance(exc, _UNAVAILABLE):
        return ApiError(503, exc.told_user or "", type="server_error", code="index_unavailable")
    return ApiError(
        503, "the language model could not answer this time; try again", type="server_error", code="model_error"
    )


class _Answering:
    """One answer generated on a worker thread, its events handed to the event loop; `stop` ends it early (the
    client went away): the model stops at its next token and the lane is given back."""

    def __init__(
        self,
        engine: rag.Engine,
        question: str,
        history: list,
        params: rag.QueryParams,
        ticket,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self._events: asyncio.Queue = asyncio.Queue()
        self._stop = threading.Event()
        self._loop = loop

        def work() -> None:
            events: Iterator | None = None
            try:
                events = engine.ask_stream(question, history, params)
                for event in events:
                    if self._stop.is_set():
                        break
                    loop.call_soon_threadsafe(self._events.put_nowait, event)
            except Exception as exc:  # handed to the request
                loop.call_soon_threadsafe(self._events.put_nowait, exc)
            finally:
                if events is not None:
                    events.close()  # stops the model if it is still writing
                ticket.release()
                loop.call_soon_threadsafe(self._events.put_nowait, _DONE)

        threading.Thread(target=work, name="rag-api-answer", daemon=True).start()

    async def next(self) -> Any:
        return await self._events.get()

    async def result(self) -> rag.Answer:
        while True:
            event = await self.next()
            if event is _DONE:
                raise ApiError(503, "the answer ended early; try again", type="server_error")
            if isinstance(event, Exception):
                raise _mapped(event)
            if event.kind == "answer":
                return event.data

    def stop(self) -> None:
        self._stop.set()


def _extension(final: rag.Answer) -> dict:
    return {
        "answer": final.answer,
        "refused": final.refused,
        "citations": [c.to_dict() for c in final.citations],
        "unsupported": list(final.unsupported),
        "standalone_question": final.standalone_question,
        "kind": final.kind,
        "support": final.support,
        "way": final.way,
        "timings": final.timings,
    }


def _completion(final: rag.Answer, model: str) -> dict:
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": final.answer}, "finish_reason": "stop"}],
        "rag": _extension(final),
    }


async def _sse(answer: _Answering, first: Any, model: str) -> AsyncIterator[str]:
    """The answer as OpenAI chunks: the role, the model's words as they come, then a last chunk whose `rag` field holds
    the checked answer (show it in place of the streamed words: markers renumbered, unsupported sentences removed, or
    the refusal), then `[DONE]`. An error after the stream started ends it with an `error` event."""
    head = {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
    }

    def chunk(delta: dict, finish: str | None = None, **extra: Any) -> str:
        return (
            "data: "
            + json.dumps(head | {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]} | extra)
            + "\n\n"
        )

    try:
        yield chunk({"role": "assistant", "content": ""})
        event = first
        while event is not _DONE:
            if isinstance(event, Exception):
                error = _mapped(event)
                yield (
                    "data: "
                    + json.dumps({"error": {"message": error.message, "type": error.type, "code": error.code}})
                    + "\n\n"
                )
                break
            if event.kind == "token":
                yield chunk({"content": event.data})
            elif event.kind == "answer":
                yield chunk({}, "stop", rag=_extension(event.data))
            event = await answer.next()
        yield "data: [DONE]\n\n"
    finally:
        answer.stop()


class ApiRoutes:
    """ASGI middleware: requests under /v1 go to the API (their body read first, up to `max_body` bytes: 413 past
    it), everything else to the page."""

    def __init__(self, app, api: FastAPI, max_body: int) -> None:
        self.app, self.api, self.max_body = app, api, max_body

    async def __call__(self, scope, receive, send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not (path == PREFIX or path.startswith(PREFIX + "/")):
            await self.app(scope, receive, send)
            return
        too_big = ApiError(413, f"the request body is over {self.max_body // 1024} KB", code="body_too_large")
        length = dict(scope.get("headers") or []).get(b"content-length", b"0")
        if not length.isdigit() or int(length) > self.max_body:
            error = too_big if length.isdigit() else ApiError(400, "the Content-Length header is not a number")
            await error.response()(scope, receive, send)
            return
        body, more = b"", True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.max_body:
                await too_big.response()(scope, receive, send)
                return
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.api(scope, replay, send)
