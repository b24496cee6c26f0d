"""What a backend that keeps prompt states can do: read a prompt prefix once, keep (and save) the state of having
read it, so later prompts that start the same way skip reading that part."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any


class KeepsState(ABC):
    """A chat model that keeps the state of reading a prompt prefix (the embedded runtime does; a server may cache
    prompts itself, unseen). Backends declare it by subclassing; the answer and the whole-corpus reading ask
    `isinstance(llm, KeepsState)`."""

    @abstractmethod
    def has_state(self, messages: list[Any]) -> bool:
        """Whether reading `messages` is held by this process or saved by an earlier one (then `prime` is quick)."""

    @abstractmethod
    def prime(self, messages: list[Any], progress: Callable[[int, int], None] | None = None) -> str:
        """Hold the state of reading `messages` from now on; returns how ("primed", "restored" or "read").
        `progress(done, total)` hears how many prompt tokens have been read."""
