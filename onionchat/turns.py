"""Turns at the password hasher, handed out fairly: round robin between circuits, then between names."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator


class FairTurns:
    """``slots`` turns at once; whoever waits is served round robin by circuit, then by name.

    argon2id takes a whole core or two for ~0.1 s, so hashes run ``slots`` at a time. With a
    plain queue, whoever fills it delays everyone behind them (60 queued fake logins held a
    real one back by 18.6 s). Here each circuit, and within a circuit each name, has its own
    queue, and the next turn goes to the circuit (then the name) served least recently: a real
    login waits for at most one turn per other circuit that is waiting, however deep their
    queues are. Choosing costs one pass over the circuits waiting, which the login throttle
    keeps few per circuit.
    """

    def __init__(self, slots: int = 1) -> None:
        self._free = slots
        self._waiting: dict[str, dict[str, deque[asyncio.Future[None]]]] = {}  # circuit -> name -> waiters
        # When each circuit (and name) last got a turn: the next goes to whoever waited longest
        # since theirs; never served counts as longest, ties in order of arrival. Kept only for
        # those waiting and the latest served, so it stays as small as the queue.
        self._tick = 0
        self._served: dict[str, int] = {}
        self._served_names: dict[tuple[str, str], int] = {}

    def waiting(self) -> int:
        """How many are waiting for a turn."""
        return sum(len(q) for names in self._waiting.values() for q in names.values())

    @contextlib.asynccontextmanager
    async def turn(self, *, circuit: str, name: str) -> AsyncIterator[None]:
        """Wait for a turn for ``name`` asked from ``circuit``; hold it for the block."""
        await self._acquire(circuit, name)
        try:
            yield
        finally:
            self._release()

    async def _acquire(self, circuit: str, name: str) -> None:
        if self._free > 0 and not self._waiting:
            self._free -= 1
            self._note_served(circuit, name)
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(circuit, {}).setdefault(name, deque()).append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._release()  # the turn was ours already: hand it on
            else:
                self._forget(circuit, name, waiter)
            raise

    def _note_served(self, circuit: str, name: str) -> None:
        self._tick += 1
        self._served = {c: t for c, t in self._served.items() if c in self._waiting}
        self._served[circuit] = self._tick
        self._served_names = {k: t for k, t in self._served_names.items() if k[0] in self._waiting}
        self._served_names[(circuit, name)] = self._tick

    def _forget(self, circuit: str, name: str, waiter: asyncio.Future[None]) -> None:
        names = self._waiting.get(circuit)
        if names is None or name not in names:
            return
        with contextlib.suppress(ValueError):
            names[name].remove(waiter)
        if not names[name]:
            del names[name]
        if not names:
            del self._waiting[circuit]

    def _release(self) -> None:
        """Hand the freed turn to the circuit, then the name, that waited longest since its last turn."""
        while self._waiting:
            circuit = min(self._waiting, key=lambda c: self._served.get(c, -1))
            names = self._waiting[circuit]
            name = min(names, key=lambda n: self._served_names.get((circuit, n), -1))
            queue = names[name]
            waiter = queue.popleft()
            if not queue:
                del names[name]
            if not names:
                del self._waiting[circuit]
            if not waiter.done():
                self._note_served(circuit, name)
                waiter.set_result(None)
                return
        self._free += 1
