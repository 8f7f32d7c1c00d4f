"""Sliding-window throttles kept in memory, keyed by session, name or circuit, never by address."""

from __future__ import annotations

import contextlib
import enum
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field


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

    def take_back(self, at: float) -> None:
        """Forget the event counted at ``at`` (it turned out not to be one)."""
        with contextlib.suppress(ValueError):  # already expired
            self.times.remove(at)


class Verdict(enum.Enum):
    """What the login throttle says about one attempt."""

    GO = "go"  # counted as a failure in advance: the password may be checked
    THROTTLED = "throttled"  # this name from this circuit, or this circuit, has spent its budget
    CODE_FIRST = "code_first"  # the name is under attack from many circuits: only a right 2FA code opens it


@dataclass(frozen=True, slots=True)
class Attempt:
    """One counted login attempt, so that a success can be taken back out of the counts."""

    verdict: Verdict
    name: str
    at: float
    counted: tuple[tuple[str, ...], ...]  # the buckets it was counted in


@dataclass(frozen=True, slots=True)
class LoginBudget:
    """Failed logins allowed per ``window`` seconds, per name and circuit, per circuit, and per name."""

    per_name_and_circuit: int
    per_circuit: int
    per_name: int
    window: float


class LoginThrottle:
    """Failed logins, counted before the password is checked, per name *and* per circuit.

    Every attempt is counted as a failure the moment it arrives (``attempt``), in the same step
    that checks the budget, so concurrent attempts cannot all pass the check before any is
    counted; a right password takes its count back (``succeeded``). Three budgets:

    - per name and circuit: someone guessing from one circuit stops there, and only there: the
      counsellor, on a circuit of their own, still logs in;
    - per circuit, whatever the names: one circuit cannot try many names;
    - per name, over all circuits: guessing spread over many circuits stops too; the name then
      opens only to a right two-factor code given with the password (CODE_FIRST), which is
      checked before any password is hashed.

    Unknown names are counted exactly like known ones (each under its own name), so neither
    the answer nor its timing tells whether an account exists. Memory is bounded by
    ``max_buckets``: the least recently used buckets go first, known or not alike.
    """

    def __init__(self, budget: LoginBudget, *, max_buckets: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.budget = budget
        self.max_buckets = max_buckets
        self._clock = clock
        self._buckets: OrderedDict[tuple[str, ...], Throttle] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def _bucket(self, key: tuple[str, ...], limit: int) -> Throttle:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = Throttle(limit, self.budget.window)
            self._bound()
        else:
            self._buckets.move_to_end(key)
        return bucket

    def _bound(self) -> None:
        # Least recently used first: a bucket unused for a whole window is empty anyway, so only a
        # spray of more than max_buckets names and circuits within one window (each circuit
        # priced by its own budget) can push out one that still counts.
        while len(self._buckets) > self.max_buckets:
            self._buckets.popitem(last=False)

    def attempt(self, name: str, *, circuit: str, ceiling: bool = True) -> Attempt:
        """Check and count one attempt for ``name`` from ``circuit`` in one step.

        ``ceiling=False`` leaves out the per-name budget over all circuits (a signed-in person
        confirming their own password: the session already proved a whole login).
        """
        now = self._clock()
        budget = self.budget
        pair = self._bucket(("pair", name, circuit), budget.per_name_and_circuit)
        own = self._bucket(("circuit", circuit), budget.per_circuit)
        if not pair.has_room(now) or not own.has_room(now):
            return Attempt(Verdict.THROTTLED, name, now, ())
        pair.allow(now)
        own.allow(now)
        counted: tuple[tuple[str, ...], ...] = (("pair", name, circuit), ("circuit", circuit))
        if ceiling:
            everywhere = self._bucket(("name", name), budget.per_name)
            if not everywhere.allow(now):
                return Attempt(Verdict.CODE_FIRST, name, now, counted)
            counted += (("name", name),)
        return Attempt(Verdict.GO, name, now, counted)

    def succeeded(self, attempt: Attempt) -> None:
        """The password was right: the attempt is not a failure after all."""
        for key in attempt.counted:
            bucket = self._buckets.get(key)
            if bucket is not None:
                bucket.take_back(attempt.at)

    def signed_in(self, name: str, *, circuit: str) -> None:
        """A whole login (password and code) from ``circuit``: its failures for ``name`` are forgotten.

        Failures from other circuits stay: someone else's guessing is not forgiven by it.
        """
        self._buckets.pop(("pair", name, circuit), None)
