"""A client of an OpenAI-compatible chat endpoint: a running `rag serve` (its answers come back whole: checked
answer, citations, timings) or another product's (its reply text only). `rag ask --server` and `rag eval --endpoint`
use it."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx

from rag.answer import Answer, Event, final, looks_like_refusal
from rag.cite import Citation
from rag.errors import InputError, ModelError, RagError
from rag.retrieve import Hit
from rag.whole import RETRIEVED

DEFAULT_SERVER = "http://127.0.0.1:7860"


class Client:
    """Questions sent to `url` (a server's address, with or without `/v1`) with bearer `key`; `model` defaults to
    the first the endpoint lists."""

    def __init__(self, url: str, key: str | None = None, model: str | None = None, timeout: float = 300.0) -> None:
        base = url.rstrip("/")
        self.base = base if base.endswith("/v1") else f"{base}/v1"
        host = httpx.URL(self.base).host
        self._http = {
            "trust_env": host not in ("127.0.0.1", "localhost", "::1")
        }  # no proxy for a server on this machine
        self._headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._model, self.timeout = model, timeout

    def available(self, timeout: float = 0.5) -> bool:
        """Whether an OpenAI-compatible API answers at this address."""
        try:
            r = httpx.get(f"{self.base}/models", headers=self._headers, timeout=timeout, **self._http)
        except httpx.HTTPError:
            return False
        return r.status_code == 200

    @property
    def model(self) -> str:
        if self._model is None:
            data = self._call("GET", "/models").json().get("data") or [{}]
            self._model = data[0].get("id") or "default"
        return self._model

    def ask_stream(
        self, question: str, history: list[tuple[str, str]] | None = None, sources: list[str] | None = None
    ) -> Iterator[Event]:
        """`token` events as the server streams them, then the `answer` (timings measured here, as a user waits)."""
        messages: list[dict[str, str]] = []
        for user, reply in history or []:
            messages += [{"role": "user", "content": user}, {"role": "assistant", "content": reply}]
        messages.append({"role": "user", "content": question})
        body: dict[str, Any] = {"model": self.model, "messages": messages, "stream": True} | (
            {"sources": list(sources)} if sources else {}
        )
        started = time.perf_counter()
        words, extension, first = [], None, None
        try:
            with httpx.stream(
                "POST",
                f"{self.base}/chat/completions",
                json=body,
                headers=self._headers,
                timeout=self.timeout,
                **self._http,
            ) as r:
                if r.status_code != 200:
                    r.read()
                    raise self._refused(r)
                for line in r.iter_lines():
                    if not line.startswith("data:") or line[5:].strip() == "[DONE]":
                        continue
                    chunk = json.loads(line[5:])
                    if "error" in chunk:
                        raise ModelError(
                            f"the server at {self.base} failed mid-answer: {chunk['error'].get('message')}"
                        )
                    extension = chunk.get("rag") or extension
                    for choice in chunk.get("choices") or []:
                        delta = (choice.get("delta") or {}).get("content")
                        if delta:
                            first = first or time.perf_counter()
                            words.append(delta)
                            yield Event("token", delta)
        except httpx.TimeoutException:
            raise ModelError(f"the server at {self.base} did not answer within {self.timeout:g} s") from None
        except httpx.HTTPError as exc:
            raise ModelError(
                f"could not reach the server at {self.base} ({exc}); start `rag serve`, or leave out --server"
            ) from None
        ended = time.perf_counter()
        timings = {
            "first_token_ms": round(((first or ended) - started) * 1000, 1),
            "total_ms": round((ended - started) * 1000, 1),
        }
        yield Event("answer", _answer(question, "".join(words), extension, timings))

    def ask(
        self, question: str, history: list[tuple[str, str]] | None = None, sources: list[str] | None = None
    ) -> Answer:
        return final(self.ask_stream(question, history, sources))

    def search(self, query: str, k: int | None = None, sources: list[str] | None = None) -> list[Hit]:
        body: dict[str, Any] = (
            {"query": query} | ({"k": k} if k else {}) | ({"sources": list(sources)} if sources else {})
        )
        return [Hit(**h) for h in self._call("POST", "/search", json=body).json()["hits"]]

    def _call(self, method: str, path: str, **kw: Any) -> httpx.Response:
        try:
            r = httpx.request(
                method, f"{self.base}{path}", headers=self._headers, timeout=self.timeout, **self._http, **kw
            )
        except httpx.HTTPError as exc:
            raise ModelError(
                f"could not reach the server at {self.base} ({exc}); start `rag serve`, or leave out --server"
            ) from None
        if r.status_code != 200:
            raise self._refused(r)
        return r

    def _refused(self, r: httpx.Response) -> RagError:
        try:
            message = r.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = r.text[:200]
        if r.status_code == 401:
            return InputError(f"the server at {self.base} wants an API key: set RAG_SERVER_KEY ({message})")
        if 400 <= r.status_code < 500:
            return InputError(f"the server at {self.base} refused the request: {message}")
        return ModelError(f"the server at {self.base} answered {r.status_code}: {message}")


def _answer(question: str, text: str, extension: dict | None, timings: dict[str, float]) -> Answer:
    """The server's checked answer when it sent one (`rag serve` does); otherwise the reply text as it came."""
    if extension is None:
        return Answer(question, question, text, looks_like_refusal(text), timings=timings, raw=text)
    citations = [Citation(**{"text": ""} | c) for c in extension.get("citations", [])]
    server = {f"server_{k}": v for k, v in (extension.get("timings") or {}).items()}
    return Answer(
        question,
        extension.get("standalone_question") or question,
        extension["answer"],
        bool(extension.get("refused")),
        citations=citations,
        timings=timings | server,
        unsupported=list(extension.get("unsupported") or []),
        raw=text,
        kind=extension.get("kind") or "fact",
        support=extension.get("support") or "",
        way=extension.get("way") or RETRIEVED,
    )
