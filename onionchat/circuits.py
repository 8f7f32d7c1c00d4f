"""Per-circuit budgets: what one Tor circuit may spend, kept in memory only and never logged.

Behind an onion service every request comes from 127.0.0.1; tor tells us instead which
circuit a connection came on (an anonymous number, see web/proxy.py). A circuit is cheap
to replace, but each new one costs its owner an introduction that tor's proof-of-work
prices under attack, so budgets per circuit are what one person cannot multiply for free.

Without Tor circuit ids (``serve --local``) the whole listener is the one circuit LOCAL:
the same budgets then apply to everybody together, and a circuit is never closed.
"""

from __future__ import annotations

import enum
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from onionchat.config import CircuitsConfig

LOCAL: Final = "local"  # the one 'circuit' of a listener without Tor circuit ids
WINDOW: Final = 600.0  # seconds: the budget window of sessions, chats and resumes
STRIKE_WINDOW: Final = 60.0
BURST_SECONDS: Final = 10.0  # a request burst may use this many seconds' worth of the rate
# A new circuit starts with this many seconds' worth (a browser's first pages and frames fit): a
# flooder who has their circuit closed and builds another gains little from its fresh budget.
START_SECONDS: Final = 5.0
_EVICT_SCAN: Final = 64  # how far from the least recently seen end a forgettable circuit is looked for


class Budget(enum.Enum):
    """What a circuit spends."""

    SESSION = "session"
    CHAT = "chat"
    RESUME = "resume"
    REQUEST = "request"
    CONNECTION = "connection"


@dataclass(slots=True)
class Window:
    """At most ``limit`` events per fixed window of ``seconds``: two numbers, so millions fit."""

    limit: int
    seconds: float
    start: float = 0.0
    count: int = 0

    def used(self, now: float) -> int:
        """Events counted in the current window."""
        if now - self.start >= self.seconds:
            self.start, self.count = now, 0
        return self.count

    def take(self, now: float) -> bool:
        """Count one event if there is room; False (counting nothing) if not."""
        if self.used(now) >= self.limit:
            return False
        self.count += 1
        return True


@dataclass(slots=True)
class Bucket:
    """A token bucket: ``rate`` per second on average, bursts up to ``burst``."""

    rate: float
    burst: float
    tokens: float
    at: float

    def take(self, now: float) -> bool:
        """Spend one token if there is one."""
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True


@dataclass(slots=True, eq=False)
class CircuitState:
    """What one circuit has spent; a few small numbers, created on its first request."""

    sessions: Window
    chats: Window
    resumes: Window
    requests: Bucket
    strikes: Window
    connections: int = 0
    closed_until: float = 0.0
    seen: float = 0.0


class Recent:
    """A count over the last ten minutes, in one-minute slots (for the supervisors' flood signs)."""

    __slots__ = ("_minute", "_slots")

    def __init__(self) -> None:
        self._slots = [0] * 10
        self._minute = 0

    def _advance(self, now: float) -> None:
        minute = int(now // 60)
        if minute - self._minute >= len(self._slots):
            self._slots = [0] * len(self._slots)
        else:
            for m in range(self._minute + 1, minute + 1):
                self._slots[m % len(self._slots)] = 0
        self._minute = max(self._minute, minute)

    def add(self, now: float, n: int = 1) -> None:
        """Count ``n`` at ``now``."""
        self._advance(now)
        self._slots[self._minute % len(self._slots)] += n

    def total(self, now: float) -> int:
        """The count of the last ten minutes."""
        self._advance(now)
        return sum(self._slots)


@dataclass(frozen=True, slots=True)
class FloodSigns:
    """What supervisors see of an attack: counts of the last ten minutes, never a circuit id."""

    circuits: int  # circuits remembered that made a request in the last ten minutes
    refused: int  # requests refused for a circuit budget
    closed: int  # circuits closed for going on over budget
    repeat_circuits: int  # circuits that started more than one chat


@dataclass(slots=True)
class _Counters:
    refused: Recent = field(default_factory=Recent)
    closed: Recent = field(default_factory=Recent)


class CircuitBudgets:
    """Every circuit's budgets, at most ``config.tracked`` of them, least recently seen forgotten first."""

    def __init__(self, config: CircuitsConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.clock = clock
        self._states: OrderedDict[str, CircuitState] = OrderedDict()
        self._close_listeners: list[Callable[[str], None]] = []
        self._counters = _Counters()
        # False behind Tor without circuit ids (control mode; a torrc without the export line):
        # there LOCAL is every visitor at once, and a budget for one would shut out everyone.
        self.local_budgets = True

    def applies(self, circuit: str) -> bool:
        """Whether ``circuit`` has budgets (every Tor circuit; LOCAL only when local_budgets)."""
        return circuit != LOCAL or self.local_budgets

    def forget_all(self) -> None:
        """Forget every circuit (a new tor process numbers its circuits from 1 again)."""
        self._states.clear()

    def __len__(self) -> int:
        return len(self._states)

    def on_close(self, listener: Callable[[str], None]) -> None:
        """Call ``listener(circuit)`` whenever a circuit is closed for abuse (never LOCAL)."""
        self._close_listeners.append(listener)

    # -- the states, bounded ---------------------------------------------------------------

    def _new_state(self, circuit: str, now: float) -> CircuitState:
        c = self.config
        burst = c.requests_per_second * BURST_SECONDS
        start = burst if circuit == LOCAL else c.requests_per_second * START_SECONDS  # LOCAL is never rebuilt
        return CircuitState(sessions=Window(c.sessions, WINDOW), chats=Window(c.chats * 2, WINDOW),
                            resumes=Window(c.resumes, WINDOW),
                            requests=Bucket(float(c.requests_per_second), burst, start, now),
                            strikes=Window(c.strikes, STRIKE_WINDOW), seen=now)

    def _state(self, circuit: str, now: float) -> CircuitState:
        state = self._states.get(circuit)
        if state is None:
            if len(self._states) >= self.config.tracked:
                self._forget_one()
            state = self._states[circuit] = self._new_state(circuit, now)
        else:
            self._states.move_to_end(circuit)
        state.seen = now
        return state

    def _forget_one(self) -> None:
        """Forget the least recently seen circuit, preferring one without open connections.

        Forgetting gives that circuit fresh budgets if it comes back: the price of a ceiling on
        memory, paid only by someone who already holds ``tracked`` circuits at once.
        """
        for n, (circuit, state) in enumerate(self._states.items()):
            if n >= _EVICT_SCAN:
                break
            if state.connections == 0 and circuit != LOCAL:
                del self._states[circuit]
                return
        oldest = next(iter(self._states))
        del self._states[oldest]

    # -- spending --------------------------------------------------------------------------

    def _open_state(self, circuit: str) -> tuple[CircuitState, float] | None:
        """The state of ``circuit`` now, None while it is closed for going on."""
        now = self.clock()
        state = self._state(circuit, now)
        return None if self._closed(state, now) else (state, now)

    @staticmethod
    def _window(state: CircuitState, budget: Budget) -> Window | None:
        if budget is Budget.SESSION:
            return state.sessions
        if budget is Budget.CHAT:
            return state.chats
        return state.resumes if budget is Budget.RESUME else None

    def charge_request(self, circuit: str) -> bool:
        """Count one request of ``circuit`` (every request pays one); False when over budget."""
        if not self.applies(circuit):
            return True
        found = self._open_state(circuit)
        if found is None:
            return False
        state, now = found
        if state.requests.take(now):
            return True
        self._strike(circuit, state, now)
        return False

    def charge(self, circuit: str, budget: Budget) -> bool:
        """Count one ``budget`` action of ``circuit``; False when over budget (a strike is counted)."""
        if budget is Budget.REQUEST:
            return self.charge_request(circuit)
        if not self.applies(circuit):
            return True
        found = self._open_state(circuit)
        if found is None:
            return False
        state, now = found
        window = self._window(state, budget)
        if window is not None:
            ok = window.take(now)
        elif circuit == LOCAL:
            # Without Tor the testers of one machine share LOCAL, each browser with its 6
            # connections: only Tor circuits are counted (serve --local listens on loopback).
            ok = True
        else:
            ok = state.connections < self.config.connections
            if ok:
                state.connections += 1
        if not ok:
            self._strike(circuit, state, now)
        return ok

    def allows(self, circuit: str, budget: Budget) -> bool:
        """Whether one more ``budget`` action of ``circuit`` would be allowed (nothing is counted)."""
        if not self.applies(circuit):
            return True
        found = self._open_state(circuit)
        if found is None:
            return False
        window = self._window(found[0], budget)
        return window is None or window.used(found[1]) < window.limit

    def refuse(self, circuit: str) -> None:
        """Count a refusal decided elsewhere (e.g. too many chats at once) as a strike."""
        if not self.applies(circuit):
            return
        now = self.clock()
        self._strike(circuit, self._state(circuit, now), now)

    def released(self, circuit: str) -> None:
        """A connection of ``circuit`` closed."""
        state = self._states.get(circuit)
        if state is not None and state.connections > 0:
            state.connections -= 1

    def closed(self, circuit: str) -> bool:
        """True while ``circuit`` is refused after being closed for abuse."""
        state = self._states.get(circuit)
        return state is not None and self._closed(state, self.clock())

    def chats_started(self, circuit: str) -> int:
        """Chats ``circuit`` started in the current window (0 for a circuit not remembered)."""
        state = self._states.get(circuit)
        return 0 if state is None else state.chats.used(self.clock())

    @staticmethod
    def _closed(state: CircuitState, now: float) -> bool:
        return state.closed_until > now  # never set for LOCAL (see _strike)

    def _strike(self, circuit: str, state: CircuitState, now: float) -> None:
        self._counters.refused.add(now)
        if state.strikes.take(now) or circuit == LOCAL or self._closed(state, now):
            return
        # It keeps going after being told to slow down: a person would have stopped long ago.
        state.closed_until = now + self.config.penalty_minutes * 60
        self._counters.closed.add(now)
        for listener in self._close_listeners:
            listener(circuit)

    # -- what supervisors see ------------------------------------------------------------

    def signs(self) -> FloodSigns:
        """Counts of the last ten minutes (never an id)."""
        now = self.clock()
        recent = [s for s in self._states.values() if now - s.seen <= WINDOW]
        return FloodSigns(circuits=len(recent), refused=self._counters.refused.total(now),
                          closed=self._counters.closed.total(now),
                          repeat_circuits=sum(1 for c, s in self._states.items()
                                              if c != LOCAL and now - s.seen <= WINDOW and s.chats.used(now) > 1))
