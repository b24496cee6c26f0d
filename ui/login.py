"""The web chat's login: the credential check, and a throttle that slows whoever guesses wrong, not the real user.

Failures are counted per client address and per (address, user name): after a few, that address must wait before
its next attempt is even checked, and the wait doubles with each further failure. An attempt counts as failed from
the moment it arrives until its password proves right, so attempts sent all at once meet the count of those before
them. Another address with the right password is not affected. The client address is the connection's peer: a
proxy's X-Forwarded-For is believed only from the configured trusted proxies (`ui.serve` has the server apply it).
Attempts for one user name are checked one at a time, each after a delay that grows with that name's failures from
any address, so guessing one name from many addresses at once is slowed without refusing anyone.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import parse_qs

log = logging.getLogger(__name__)

_FORM_LIMIT = 16 * 1024  # a login form is a few hundred bytes


class Login:
    """Checks a login against the configured ones (constant-time comparison of the password; an unknown user is
    compared against a dummy, so the time does not tell which names exist)."""

    def __init__(self, logins: dict[str, str]) -> None:
        self._logins = {user.encode(): password.encode() for user, password in logins.items()}

    def __call__(self, user: str, password: str) -> bool:
        expected = self._logins.get(user.encode())
        matched = hmac.compare_digest(password.encode(), expected if expected is not None else b"\0" * 32)
        return expected is not None and matched


@dataclass
class _Record:
    failures: int = 0
    last: float = 0.0


class Throttle:
    """Failure counts and waits, by key; forgotten `window` seconds after the last failure."""

    def __init__(self, free: int = 3, base: float = 1.0, cap: float = 300.0, window: float = 900.0) -> None:
        self.free, self.base, self.cap, self.window = free, base, cap, window
        self._records: dict[str, _Record] = {}
        self._lock = threading.Lock()

    def wait(self, key: str, now: float | None = None) -> float:
        """Seconds `key` must still wait before its next attempt is checked (0: go ahead)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            rec = self._live(key, now)
            return max(0.0, rec.last + self.delay(rec.failures) - now) if rec else 0.0

    def delay(self, failures: int) -> float:
        """The wait after `failures` failures: none for the first `free`, then doubling up to `cap`."""
        return 0.0 if failures < self.free else min(self.cap, self.base * 2 ** (failures - self.free))

    def failed(self, key: str, now: float | None = None) -> int:
        now = time.monotonic() if now is None else now
        with self._lock:
            rec = self._live(key, now) or self._records.setdefault(key, _Record())
            rec.failures += 1
            rec.last = now
            if len(self._records) > 10_000:  # bound memory under a flood of addresses: keep the recent ones
                for old in sorted(self._records, key=lambda k: self._records[k].last)[:5_000]:
                    del self._records[old]
            return rec.failures

    def succeeded(self, key: str) -> None:
        with self._lock:
            self._records.pop(key, None)

    def _live(self, key: str, now: float) -> _Record | None:
        rec = self._records.get(key)
        if rec is not None and now - rec.last > self.window:
            del self._records[key]
            return None
        return rec


class LoginThrottle:
    """ASGI middleware in front of Gradio's `POST /login`: refuses an address that must still wait (429 with
    Retry-After, the password unchecked), checks one attempt per user name at a time after that name's delay, and
    records each outcome."""

    def __init__(self, app, addresses: Throttle | None = None, users: Throttle | None = None) -> None:
        self.app = app
        self.addresses = addresses or Throttle()
        self.users = users or Throttle(free=10, base=0.25, cap=5.0)  # a delay before each check, never a refusal
        self._turns: dict[str, tuple[asyncio.Lock, int]] = {}  # user name -> its lock, attempts holding or awaiting it

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"].rstrip("/") != "/login":
            await self.app(scope, receive, send)
            return
        body, more = b"", True
        while more and len(body) <= _FORM_LIMIT:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        if len(body) > _FORM_LIMIT:
            await _reply(send, 413, {"detail": "login form too large"})
            return
        user = (parse_qs(body.decode("utf-8", "replace")).get("username") or [""])[0].strip()
        address = (scope.get("client") or ("?", 0))[0]
        keys = [f"addr:{address}", f"addr:{address}:user:{user}"]
        wait = max(self.addresses.wait(k) for k in keys)
        if wait > 0:
            log.warning("login from %s refused: %d s of waiting left after failed attempts", address, wait)
            await _reply(
                send, 429, {"detail": f"Too many failed logins from this address; try again in {wait:.0f} s."}, wait
            )
            return

        for k in keys:  # failed until proved right: attempts sent at once see each other
            self.addresses.failed(k)

        status: list[int] = []
        held: list[dict] = []

        async def replay():
            return {"type": "http.request", "body": body, "more_body": False}

        async def capture(message):
            if message["type"] == "http.response.start":
                status.append(message["status"])
            held.append(message)

        async with self._turn(user):  # the name's delay comes before the check: tries at once wait in line
            await asyncio.sleep(self.users.wait(f"user:{user}"))
            await self.app(scope, replay, capture)
            if status and status[0] == 200:
                for k in keys:
                    self.addresses.succeeded(k)
            elif status and status[0] in (400, 401, 403):
                self.users.failed(f"user:{user}")
        for message in held:
            await send(message)

    @contextlib.asynccontextmanager
    async def _turn(self, user: str) -> AsyncIterator[None]:
        """Hold `user`'s turn (one attempt per name at a time); a name nobody is trying is forgotten."""
        lock, using = self._turns.get(user) or (asyncio.Lock(), 0)
        self._turns[user] = (lock, using + 1)
        try:
            async with lock:
                yield
        finally:
            lock, using = self._turns[user]
            if using == 1:
                del self._turns[user]
            else:
                self._turns[user] = (lock, using - 1)


async def _reply(send, status: int, payload: dict, retry_after: float | None = None) -> None:
    headers = [(b"content-type", b"application/json")]
    if retry_after is not None:
        headers.append((b"retry-after", str(max(1, round(retry_after))).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": json.dumps(payload).encode()})
