"""The one limit on answers generated at once, shared by the web chat and the HTTP API of one server."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

_POLL_S = 0.05  # how soon a wait that is given up (`cancel` set) lets go of its place in the line


class Busy(Exception):
    """Every lane is taken and the waiting line is full (or the wait ran out, or was given up)."""


class Lanes:
    """At most `limit` answers at once and at most `waiting` more waiting for a lane; anything past that is turned away
    at once (`Busy`) instead of queueing without bound."""

    def __init__(self, limit: int, waiting: int) -> None:
        self.limit, self.waiting = limit, waiting
        self._free = threading.BoundedSemaphore(limit)
        self._lock = threading.Lock()
        self._queued = 0

    def acquire(self, timeout: float | None = None, cancel: threading.Event | None = None) -> Ticket:
        """Take one lane (waiting at most `timeout` seconds, and only until `cancel` is set: the client went away);
        the ticket gives it back, from any thread."""
        with self._lock:
            if self._queued >= self.waiting:
                raise Busy(f"{self.limit} answers are being generated and {self._queued} wait; try again shortly")
            self._queued += 1
        try:
            got = self._take(timeout, cancel)
        finally:
            with self._lock:
                self._queued -= 1
        if cancel is not None and cancel.is_set():
            if got:
                self._free.release()
            raise Busy("the wait for an answer slot was given up")
        if not got:
            raise Busy(f"no answer slot came free within {timeout:g} s; try again shortly")
        return Ticket(self._free)

    def _take(self, timeout: float | None, cancel: threading.Event | None) -> bool:
        if cancel is None:
            return self._free.acquire(timeout=timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        while not cancel.is_set():
            left = _POLL_S if deadline is None else min(_POLL_S, deadline - time.monotonic())
            if left <= 0:
                return False
            if self._free.acquire(timeout=left):
                return True
        return False

    @contextmanager
    def lane(self, timeout: float | None = None) -> Iterator[None]:
        """Hold one lane for the body of the `with`."""
        ticket = self.acquire(timeout)
        try:
            yield
        finally:
            ticket.release()


class Ticket:
    """One lane held; `release` gives it back once, whichever thread calls it."""

    def __init__(self, free: threading.BoundedSemaphore) -> None:
        self._free, self._once = free, threading.Lock()

    def release(self) -> None:
        if self._once.acquire(blocking=False):
            self._free.release()
