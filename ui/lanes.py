"""The one limit on answers generated at once, shared by the web chat and the HTTP API of one server."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class Busy(Exception):
    """Every lane is taken and the waiting line is full (or the wait ran out)."""


class Lanes:
    """At most `limit` answers at once and at most `waiting` more waiting for a lane; anything past that is turned away
    at once (`Busy`) instead of queueing without bound."""

    def __init__(self, limit: int, waiting: int) -> None:
        self.limit, self.waiting = limit, waiting
        self._free = threading.BoundedSemaphore(limit)
        self._lock = threading.Lock()
        self._queued = 0

    def acquire(self, timeout: float | None = None) -> Ticket:
        """Take one lane (waiting at most `timeout` seconds); the ticket gives it back, from any thread."""
        with self._lock:
            if self._queued >= self.waiting:
                raise Busy(f"{self.limit} answers are being generated and {self._queued} wait; try again shortly")
            self._queued += 1
        try:
            got = self._free.acquire(timeout=timeout)
        finally:
            with self._lock:
                self._queued -= 1
        if not got:
            raise Busy(f"no answer slot came free within {timeout:g} s; try again shortly")
        return Ticket(self._free)

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
