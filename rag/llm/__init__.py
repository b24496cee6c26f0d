"""Chat models that answer from retrieved passages: a name -> constructor registry over the backends."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rag.errors import ConfigError


def _local(settings: Any) -> Any:
    from rag.llm.local import LocalChatModel

    return LocalChatModel(
        model_path=settings.llm_model_path,
        n_ctx=settings.llm_n_ctx,
        max_tokens=settings.llm_max_tokens,
        temperature=settings.llm_temperature,
        timeout=settings.llm_timeout_s,
        **({"n_threads": settings.llm_threads} if settings.llm_threads else {}),
    )


def _openai(settings: Any) -> Any:
    from langchain_openai import ChatOpenAI

    if not settings.openai_base_url:
        raise ConfigError("the openai backend needs RAG_OPENAI_BASE_URL (e.g. http://127.0.0.1:8080/v1)")
    return ChatOpenAI(
        base_url=settings.openai_base_url,
        model=settings.openai_model,
        api_key=settings.openai_api_key or "not-needed",
        temperature=settings.llm_temperature,
        max_tokens=settings.llm_max_tokens,
        timeout=settings.llm_timeout_s,
        max_retries=1,
    )


BACKENDS: dict[str, Callable[[Any], Any]] = {
    "local": _local,
    "openai": _openai,
    "extractive": lambda settings: None,  # no model: answers are the best-supported sentences
}


def make_chat_model(name: str, settings: Any) -> Any:
    """A LangChain chat model for backend `name`, or None for the extractive backend."""
    try:
        factory = BACKENDS[name]
    except KeyError:
        raise ConfigError(f"unknown LLM backend {name!r}; valid: {', '.join(BACKENDS)}") from None
    return factory(settings)
