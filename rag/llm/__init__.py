"""Chat models that answer from retrieved passages: a name -> constructor registry over the backends."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, get_args

from rag.config import LLMBackend, Settings
from rag.errors import ConfigError, ModelTimeoutError
from rag.llm.extractive import NoModel
from rag.llm.state import KeepsState

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel


def flash_attn(settings: Settings) -> bool | None:
    """The embedded model's flash attention: as set, or (auto) off when the whole corpus may be in the model's view.
    Measured (docs/performance.md): off, a question read against the long saved prefix takes about 22% less time and
    each answer token 9% less, while reading the prefix once takes a third more and fresh passages 3-10% more; None
    leaves it to llama.cpp (on, on a CPU)."""
    if settings.llm_flash_attn != "auto":
        return settings.llm_flash_attn == "on"
    return False if settings.answer_mode != "retrieved" else None


def _local(settings: Settings) -> BaseChatModel:
    from rag.llm.local import LocalChatModel

    return LocalChatModel(
        model_path=settings.llm_model_path,
        n_ctx=settings.llm_n_ctx,
        max_tokens=settings.llm_max_tokens,
        temperature=settings.llm_temperature,
        timeout=settings.llm_timeout_s,
        state_dir=str(settings.llm_state_dir) if settings.llm_state_dir else None,
        states_max=settings.llm_states_max,
        speculative=settings.llm_speculative,
        cache_reuse=settings.llm_cache_reuse,
        flash_attn=flash_attn(settings),
        **({"n_threads": settings.llm_threads} if settings.llm_threads else {}),
    )


def _openai(settings: Settings) -> BaseChatModel:
    from rag.llm.remote import OpenAIChat

    if not settings.openai_base_url:
        raise ConfigError("the openai backend needs RAG_OPENAI_BASE_URL (e.g. http://127.0.0.1:8080/v1)")
    return OpenAIChat(
        base_url=settings.openai_base_url,
        model=settings.openai_model,
        api_key=settings.openai_api_key.get_secret_value() if settings.openai_api_key else "not-needed",
        temperature=settings.llm_temperature,
        max_tokens=settings.llm_max_tokens,
        timeout=settings.llm_timeout_s,
        max_retries=1,
    )


BACKENDS: dict[str, Callable[[Settings], BaseChatModel | NoModel]] = {
    "local": _local,
    "openai": _openai,
    "extractive": lambda settings: NoModel(),  # no model: answers are the best-supported sentences
}
if set(BACKENDS) != set(get_args(LLMBackend)):
    raise ImportError(f"rag.llm.BACKENDS {sorted(BACKENDS)} and rag.config.LLMBackend {get_args(LLMBackend)} disagree")


def make_chat_model(name: str, settings: Settings) -> BaseChatModel | NoModel:
    """A LangChain chat model for backend `name`, or `NoModel` for the extractive backend."""
    try:
        factory = BACKENDS[name]
    except KeyError:
        raise ConfigError(f"unknown LLM backend {name!r}; valid: {', '.join(BACKENDS)}") from None
    return factory(settings)


def with_deadline(stream: Iterator[str], timeout: float) -> Iterator[str]:
    """Yield from `stream` (run on a worker thread) until it ends, or fail once `timeout` seconds have passed,
    so a hung or very slow backend frees the request instead of holding it forever. Closing this generator (a client
    went away) stops the worker at the stream's next item and closes the stream, which stops the model."""
    items: queue.Queue = queue.Queue()
    done = object()
    cancelled = threading.Event()

    def pump() -> None:
        try:
            for item in stream:
                if cancelled.is_set():
                    break
                items.put(item)
        except BaseException as exc:  # handed to the consumer
            items.put(exc)
        finally:
            close = getattr(stream, "close", None)
            if close is not None:
                close()
        items.put(done)

    threading.Thread(target=pump, name="rag-answer-stream", daemon=True).start()
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                item = items.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise ModelTimeoutError(
                    f"the language model did not finish within {timeout:g} s; try again, or raise RAG_LLM_TIMEOUT_S"
                ) from None
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        cancelled.set()


__all__ = ["BACKENDS", "KeepsState", "NoModel", "make_chat_model", "with_deadline"]
