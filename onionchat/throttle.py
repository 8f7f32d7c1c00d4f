"""Sliding-window throttles kept in memory, keyed by session or account name, never by address."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

UNKNOWN = "\0unknown"  # names without an account share one budget, so the dict stays bounded


@dataclass(slots=True)
class Throttle:
    """At most ``limit`` events per ``window`` seconds."""

    limit: int
    window: float
    times: deque[float] = field(default_factory=deque)

    def _expire(self, now: float) -> None:
        while self.times and now - self.times[0] >= self.window:
            self.times.popleft()

    def has_room(self, now: float | None = None) -> bool:
        """True if one more event would be allowed (counts nothing)."""
        self._expire(time.monotonic() if now is None else now)
        return len(self.times) < self.limit

    def allow(self, now: float | None = None) -> bool:
        """Count one event if the budget allows it; False (counting nothing) if not."""
        now = time.monotonic() if now is None else now
        if not self.has_room(now):
            return False
        self.times.append(now)
        return True


class LoginThrottle:
    """At most ``attempts`` failed logins per account per ``window`` seconds."""

    def __init__(self, attempts: int, window: float) -> None:
        self.attempts = attempts
        self.window = window
        self._failures: dict[str, Throttle] = {}

    def _bucket(self, name: str, known: bool) -> Throttle:
        key = name if known else UNKNOWN
        bucket = self._failures.get(key)
        if bucket is None:
            bucket = self._failures[key] = Throttle(self.attempts, self.window)
        return bucket

    def blocked(self, name: str, known: bool) -> bool:
        """True while the account has used up its failed attempts."""
        return not self._bucket(name, known).has_room()

    def failed(self, name: str, known: bool) -> None:
        """Count one failed attempt."""
        self._bucket(name, known).allow()

    def succeeded(self, name: str) -> None:
        """A correct login clears the account's failures."""
        self._failures.pop(name, None)
