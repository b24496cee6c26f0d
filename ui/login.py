"""The web chat's login check, throttled so passwords cannot be guessed quickly."""

from __future__ import annotations

import hmac
import logging
import threading
import time

log = logging.getLogger(__name__)


class ThrottledLogin:
    """Checks the one configured login; after `limit` failures in `window` seconds every attempt is refused
    (right password included) until the window has passed, so passwords cannot be guessed quickly."""

    def __init__(self, user: str, password: str, limit: int = 5, window: float = 60.0) -> None:
        self._user, self._password = user, password
        self.limit, self.window = limit, window
        self._failures: list[float] = []
        self._lock = threading.Lock()

    def __call__(self, user: str, password: str) -> bool:
        now = time.monotonic()
        with self._lock:
            self._failures = [t for t in self._failures if now - t < self.window]
            if len(self._failures) >= self.limit:
                log.warning("login refused: too many failed attempts")
                return False
            ok = hmac.compare_digest(user.encode(), self._user.encode()) & hmac.compare_digest(password.encode(), self._password.encode())
            if not ok:
                self._failures.append(now)
            return bool(ok)
