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


class ScriptedChatModel(FakeListChatModel):
    """Deterministic stand-in that reads its prompt: rewrites follow-ups by naming the earlier question, and answers
    with the last sentence of passage [1]. `calls` records every request."""

    calls: list = []

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(responses=[""], calls=[], **kwargs)

    def _reply(self, messages) -> str:
        self.calls.append(list(messages))
        prompt = messages[-1].content
        if prompt.startswith("Conversation:"):
            first = prompt.split("User: ", 1)[1].split("\n", 1)[0]
            last = prompt.split("Last question: ", 1)[1].split("\n", 1)[0]
            return f"{last} (about: {first})"
        passage = prompt.split("[1] (", 1)[1].split("\n\n[2] (", 1)[0].split("\n</passages>", 1)[0]
        sentence = passage.rstrip().split(". ")[-1].rstrip('.”"')
        return f"{sentence} [1]."

    def _call(self, messages, *args: Any, **kwargs: Any) -> str:
        return self._reply(messages)

    def _stream(self, messages, *args: Any, **kwargs: Any):
        from langchain_core.messages import AIMessageChunk
        from langchain_core.outputs import ChatGenerationChunk

        for word in self._reply(messages).split(" "):
            yield ChatGenerationChunk(message=AIMessageChunk(content=word + " "))
