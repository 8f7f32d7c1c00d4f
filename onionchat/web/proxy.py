"""Connections: which Tor circuit each came on, its budget, and the time a request may take to arrive.

With ``HiddenServiceExportCircuitID haproxy`` tor starts every connection to our port with
one PROXY protocol v1 line whose source address carries the circuit's global id, e.g.::

    PROXY TCP6 fc00:dead:beef:4dad::0:19 ::1 25 80   (then CRLF; circuit 0x00000019 = 25)

``CircuitGate`` reads that line before aiohttp's HTTP parser sees a byte. A listener
that expects it closes every connection whose first line is anything else (too long,
garbled, or missing): otherwise a client could name any circuit it liked. A listener that
does not expect it (``serve --local``) never reads one: all its connections are LOCAL.

Circuit ids stay in memory: never logged, never shown, never stored.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Callable
from typing import Any, Final, cast

from aiohttp import web, web_protocol, web_runner

from onionchat.circuits import LOCAL, Budget, CircuitBudgets
from onionchat.web.acceptor import Acceptor

PROXY_LINE_MAX: Final = 107  # the longest v1 line, CRLF included (haproxy's PROXY protocol spec)
TOR_PREFIX: Final = ipaddress.IPv6Network("fc00:dead:beef:4dad::/64")  # tor's source addresses


def _nothing() -> None:
    """Before the site listens there is no acceptor to wake."""


def circuit_from_proxy_line(line: bytes) -> str | None:
    """The circuit id tor put in a PROXY v1 line (without its CRLF), or None if it is not such a line."""
    parts = line.split(b" ")
    if len(parts) != 6 or parts[0] != b"PROXY" or parts[1] != b"TCP6":
        return None
    try:
        source = ipaddress.IPv6Address(parts[2].decode("ascii"))
        ipaddress.IPv6Address(parts[3].decode("ascii"))
        ports = [int(p) for p in parts[4:]]
    except ValueError:  # also UnicodeDecodeError
        return None
    if source not in TOR_PREFIX or not all(0 <= p <= 65535 for p in ports):
        return None
    return str(int(source) & 0xFFFFFFFF)


class Listener:
    """One site's listening side: does each connection start with tor's PROXY line, and who is connected.

    ``expect_proxy`` may change while the site runs (before tor publishes the onion), so it
    is read for every new connection. With ``circuits`` the connections of one circuit are
    counted against its budget, and all of them end when the circuit is closed for abuse.
    """

    def __init__(self, request_seconds: float, circuits: CircuitBudgets | None = None,
                 max_open: int = 1_000_000) -> None:
        self.expect_proxy = False
        self.request_seconds = request_seconds
        self.circuits = circuits
        # All connections at once, whatever their circuit: set below the open-file limit, so
        # that accepting never fails for want of a file, and their memory has a ceiling. At
        # it the site stops accepting (web/acceptor.py): newcomers wait, nobody is refused.
        self.max_open = max_open
        self.total = 0
        self.room_again: Callable[[], None] = _nothing  # the site's acceptor, once it listens
        self._open: dict[str, set[CircuitProtocol]] = {}
        if circuits is not None:
            circuits.on_close(self.close_circuit)

    def has_room(self, pending: int) -> bool:
        """Room for one more connection, with ``pending`` accepted ones not yet counted."""
        return self.total + pending < self.max_open

    def counted(self) -> None:
        """A connection is being served (whatever becomes of it at the gate)."""
        self.total += 1

    def uncounted(self) -> None:
        """A counted connection closed: its file is free, the acceptor may go on."""
        self.total -= 1
        self.room_again()

    def allows(self, circuit: str) -> bool:
        """Count one more connection of ``circuit``; False if it may not open one."""
        return self.circuits is None or self.circuits.charge(circuit, Budget.CONNECTION)

    def opened(self, connection: CircuitProtocol) -> None:
        """A connection allowed by allows() is being served."""
        self._open.setdefault(connection.circuit, set()).add(connection)

    def release(self, connection: CircuitProtocol) -> None:
        """A connection being served closed."""
        own = self._open.get(connection.circuit)
        if own is None or connection not in own:
            return
        own.discard(connection)
        if not own:
            del self._open[connection.circuit]
        if self.circuits is not None:
            self.circuits.released(connection.circuit)

    def close_circuit(self, circuit: str) -> None:
        """End every connection of ``circuit`` now (it went on over budget)."""
        for connection in list(self._open.get(circuit, ())):
            connection.force_close()

    def connections(self, circuit: str) -> int:
        """How many connections of ``circuit`` are open."""
        return len(self._open.get(circuit, ()))


class CircuitGate(asyncio.Protocol):
    """What a new connection meets first: its PROXY line is read, its circuit let in or not.

    Only a connection let in gets aiohttp's handler (a CircuitProtocol), which then receives
    every callback of the transport: a connection refused (a circuit over its budget, or
    closed for going on) costs a few microseconds, so refusing a flood of connections is
    cheap, and the flood cannot take the event loop's time from the visitors.
    """

    __slots__ = ("_counted", "_deadline", "_handler", "_head", "_listener", "_make", "_transport")

    def __init__(self, listener: Listener, make: Callable[[str], CircuitProtocol]) -> None:
        self._listener = listener
        self._make = make  # the handler for a circuit let in
        self._handler: CircuitProtocol | None = None
        self._transport: asyncio.Transport | None = None
        self._head: bytearray | None = None  # the PROXY line while it arrives
        self._deadline: asyncio.TimerHandle | None = None
        self._counted = False  # counted in the listener's total (until connection_lost)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:  # noqa: D102
        # uvloop's transports are not asyncio.Transport subclasses, but they are transports.
        self._transport = cast(asyncio.Transport, transport)
        self._listener.counted()
        self._counted = True
        if not self._listener.expect_proxy:
            self._let_in(LOCAL, b"")
            return
        self._head = bytearray()
        # The line comes at once (tor writes it before connecting): a short wait is plenty.
        self._deadline = asyncio.get_running_loop().call_later(self._listener.request_seconds,
                                                               self._transport.close)

    def data_received(self, data: bytes) -> None:  # noqa: D102
        if self._handler is not None:
            self._handler.data_received(data)
            return
        if self._head is None or self._transport is None:
            return
        self._head += data
        end = self._head.find(b"\r\n")
        if end < 0:
            if len(self._head) >= PROXY_LINE_MAX:
                self._refuse()
            return
        circuit = circuit_from_proxy_line(bytes(self._head[:end])) if end + 2 <= PROXY_LINE_MAX else None
        rest = bytes(self._head[end + 2:])
        self._head = None
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        if circuit is None:
            self._refuse()
            return
        self._let_in(circuit, rest)

    def _refuse(self) -> None:
        self._head = None
        if self._transport is not None:
            self._transport.close()

    def _let_in(self, circuit: str, rest: bytes) -> None:
        if not self._listener.allows(circuit):
            self._refuse()
            return
        assert self._transport is not None
        handler = self._handler = self._make(circuit)
        self._listener.opened(handler)
        handler.connection_made(self._transport)
        if rest:
            handler.data_received(rest)

    def eof_received(self) -> None:  # noqa: D102
        if self._handler is not None:
            self._handler.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:  # noqa: D102
        if self._counted:
            self._counted = False
            self._listener.uncounted()
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        if self._handler is not None:
            self._handler.connection_lost(exc)

    def pause_writing(self) -> None:  # noqa: D102
        if self._handler is not None:
            self._handler.pause_writing()

    def resume_writing(self) -> None:  # noqa: D102
        if self._handler is not None:
            self._handler.resume_writing()


def whole_get(data: bytes) -> bool:
    """True when ``data`` is exactly one whole GET or HEAD request: nothing more of it is to come.

    Almost every request a browser sends (every poll) comes so: it needs no deadline, and
    making and cancelling a timer for each was a measurable part of a poll's cost. A GET that
    announces a body (no browser sends one) gets no deadline for it, but no handler of ours
    reads a GET's body: after the answer aiohttp reads on for at most its lingering time
    (10 s), then closes.
    """
    return data.startswith((b"GET ", b"HEAD ")) and data.find(b"\r\n\r\n") == len(data) - 4


class CircuitProtocol(web_protocol.RequestHandler):
    """aiohttp's connection handler, told which circuit it serves, with a deadline per request.

    The deadline: a request must have arrived whole (headers and body) within
    ``request_seconds`` of its first byte. Slow senders are cut off; a held frame is not
    affected, because its request arrived at once.
    """

    def __init__(self, manager: web.Server, *, loop: asyncio.AbstractEventLoop, listener: Listener,
                 circuit: str, **kwargs: Any) -> None:
        super().__init__(manager, loop=loop, **kwargs)
        self.listener = listener
        self.circuit = circuit
        self._deadline: asyncio.TimerHandle | None = None

    def data_received(self, data: bytes) -> None:  # noqa: D102
        if self.transport is None:  # closed (force_close): nothing more to read
            return
        if self._deadline is None and not whole_get(data):
            self._deadline = self._loop.call_later(self.listener.request_seconds, self._too_slow)  # a first byte
        super().data_received(data)

    def _too_slow(self) -> None:
        self._deadline = None
        self.force_close()

    def arrived(self) -> None:
        """The current request has arrived whole (or needs no more bytes): stop its deadline."""
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def connection_lost(self, exc: BaseException | None) -> None:  # noqa: D102
        self.arrived()
        self.listener.release(self)
        super().connection_lost(exc)


def arrived(request: web.BaseRequest) -> None:
    """Tell the connection that ``request`` has arrived whole (its body, if any, was read)."""
    protocol = request.protocol
    if isinstance(protocol, CircuitProtocol):
        protocol.arrived()


class CircuitSite(web_runner.BaseSite):
    """A TCP site whose connections are CircuitProtocol handlers of ``listener``."""

    def __init__(self, runner: web.AppRunner, host: str, port: int, listener: Listener,
                 handler_args: dict[str, Any], backlog: int = 1024) -> None:
        super().__init__(runner, backlog=backlog)
        self._host = host
        self._port = port
        self._listener = listener
        self._handler_args = handler_args

    @property
    def name(self) -> str:  # noqa: D102
        return f"http://{self._host}:{self._port}"

    async def start(self) -> None:
        """Listen; every accepted connection gets its own CircuitProtocol."""
        await super().start()
        loop = asyncio.get_running_loop()
        server = self._runner.server
        assert isinstance(server, web.Server)

        def handler(circuit: str) -> CircuitProtocol:
            return CircuitProtocol(server, loop=loop, listener=self._listener, circuit=circuit, **self._handler_args)

        listener = self._listener
        acceptor = await Acceptor.listen(self._host, self._port, self._backlog,
                                         lambda: CircuitGate(listener, handler), listener.has_room)
        listener.room_again = acceptor.room_again
        self._server = acceptor
