"""A deterministic chat model that replays queued answers and records what it was sent."""

from __future__ import annotations

from typing import Any

from langchain_core.language_models.fake_chat_models import FakeListChatModel


class ReplayChatModel(FakeListChatModel):
    """Answers with the queued `responses` in order (streamed a character at a time); `calls` records each request."""

    calls: list = []

    def __init__(self, responses: list[str], **kwargs: Any) -> None:
        super().__init__(responses=list(responses), calls=[], **kwargs)

    def _call(self, messages, *args: Any, **kwargs: Any) -> str:
        self.calls.append(list(messages))
        return super()._call(messages, *args, **kwargs)

    def _stream(self, messages, *args: Any, **kwargs: Any):
        self.calls.append(list(messages))
        yield from super()._stream(messages, *args, **kwargs)
