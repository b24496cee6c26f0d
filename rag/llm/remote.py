"""The `openai` backend: any OpenAI-compatible chat server, its failures turned into errors that say what to do."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
from langchain_core.outputs import ChatGenerationChunk, ChatResult
from langchain_openai import ChatOpenAI

from rag.errors import ModelError, ModelTimeoutError


class OpenAIChat(ChatOpenAI):
    """ChatOpenAI whose connection failures, timeouts and error statuses raise `ModelError` naming the server."""

    def _stream(self, *args: Any, **kwargs: Any) -> Iterator[ChatGenerationChunk]:
        try:
            yield from super()._stream(*args, **kwargs)
        except openai.APIError as exc:
            raise self._failed(exc) from exc

    def _generate(self, *args: Any, **kwargs: Any) -> ChatResult:
        try:
            return super()._generate(*args, **kwargs)
        except openai.APIError as exc:
            raise self._failed(exc) from exc

    def _failed(self, exc: openai.APIError) -> ModelError:
        where = self.openai_api_base or "the configured server"
        if isinstance(exc, openai.APITimeoutError):
            return ModelTimeoutError(
                f"the language model server at {where} did not answer in time; try again, or raise RAG_LLM_TIMEOUT_S"
            )
        if isinstance(exc, openai.APIConnectionError):
            return ModelError(
                f"could not reach the language model server at {where}; start it, or fix RAG_OPENAI_BASE_URL"
            )
        status = getattr(exc, "status_code", None)
        return ModelError(f"the language model server at {where} answered {status or 'an error'}: {exc.message}")
