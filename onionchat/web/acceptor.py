"""Accepting connections ourselves, so that at the ceiling new ones wait instead of being refused.

An event loop's own server accepts whatever arrives: past a ceiling a connection could only be
closed again (a visitor arriving in a flood then sees an error), and past the open-file limit
accepting fails (uvloop then closes its listening socket for good). Here the listening socket
is read only while the site has room: at its ceiling accepting pauses, and newcomers wait in
the kernel's listen queue (a browser sees a slow page, not an error) until a connection closes.
"""

from __future__ import annotations

import asyncio
import errno
import socket
from collections.abc import Callable
from typing import Any, Final

ACCEPT_BATCH: Final = 64  # accepted per wake-up, then other work gets its turn
# Out of files or memory although below the ceiling (another part of the process holds them):
# accepting pauses this long rather than spinning on the error.
RESOURCE_PAUSE: Final = 0.1
OUT_OF_RESOURCES: Final = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


class Acceptor(asyncio.AbstractServer):
    """Listening sockets read only while ``has_room(pending)``; ``room_again()`` resumes them.

    ``pending`` is how many accepted sockets are still being handed to the loop (their files
    are open, their protocols not yet counted): the protocol counts its connection from
    ``connection_made`` on. The peer's address that accept() returns is dropped unread: no
    client address is ever read into our data.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, sockets: list[socket.socket],
                 protocol_factory: Callable[[], asyncio.Protocol], has_room: Callable[[int], bool]) -> None:
        self._loop = loop
        self._sockets = sockets
        self._factory = protocol_factory
        self._has_room = has_room
        self._reading = False
        self._closed = False
        self._starting: set[asyncio.Task[Any]] = set()  # connections being handed to the loop
        self._resume_later: asyncio.TimerHandle | None = None

    @classmethod
    async def listen(cls, host: str, port: int, backlog: int, protocol_factory: Callable[[], asyncio.Protocol],
                     has_room: Callable[[int], bool]) -> Acceptor:
        """Bind every address ``host`` names (as the loop's create_server would) and start accepting."""
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        sockets: list[socket.socket] = []
        try:
            for family, kind, proto, _, address in dict.fromkeys(infos):
                sock = socket.socket(family, kind, proto)
                sockets.append(sock)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sock.bind(address)
                sock.listen(backlog)
                sock.setblocking(False)
        except OSError:
            for sock in sockets:
                sock.close()
            raise
        acceptor = cls(loop, sockets, protocol_factory, has_room)
        acceptor.room_again()
        return acceptor

    # -- accepting -------------------------------------------------------------------------

    def room_again(self) -> None:
        """A connection closed (or the site started): read the listening sockets again if paused."""
        if self._reading or self._closed or self._resume_later is not None or not self._has_room(len(self._starting)):
            return
        for sock in self._sockets:
            self._loop.add_reader(sock.fileno(), self._accept, sock)
        self._reading = True

    def _pause(self) -> None:
        if self._reading:
            for sock in self._sockets:
                self._loop.remove_reader(sock.fileno())
            self._reading = False

    def _accept(self, sock: socket.socket) -> None:
        for _ in range(ACCEPT_BATCH):
            if not self._has_room(len(self._starting)):
                self._pause()  # the rest wait in the kernel's queue until room_again()
                return
            try:
                conn = sock.accept()[0]  # the peer's address is dropped unread
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno not in OUT_OF_RESOURCES:
                    raise
                self._out_of_resources(exc)
                return
            conn.setblocking(False)
            task = self._loop.create_task(self._serve(conn))
            self._starting.add(task)
            task.add_done_callback(self._handed_over)

    def _handed_over(self, task: asyncio.Task[Any]) -> None:
        self._starting.discard(task)
        self.room_again()  # it was counted as pending until now

    def _out_of_resources(self, exc: OSError) -> None:
        # Reported as asyncio's own accept loop reports it: the server's loop error handler
        # (web/server.LoopErrors) counts these and logs once a minute, never each time.
        self._loop.call_exception_handler({"message": "socket.accept() out of system resource", "exception": exc})
        self._pause()
        self._resume_later = self._loop.call_later(RESOURCE_PAUSE, self._resume_after_pause)

    def _resume_after_pause(self) -> None:
        self._resume_later = None
        self.room_again()

    async def _serve(self, conn: socket.socket) -> None:
        try:
            await self._loop.connect_accepted_socket(self._factory, conn)
        except OSError:  # reset before it could be served: nothing to serve
            conn.close()

    # -- asyncio.AbstractServer ------------------------------------------------------------

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        """The listening sockets (aiohttp's runner reads their addresses)."""
        return tuple(self._sockets)

    def close(self) -> None:
        """Stop listening; connections already accepted are served on (aiohttp ends them)."""
        if self._closed:
            return
        self._pause()
        self._closed = True
        if self._resume_later is not None:
            self._resume_later.cancel()
            self._resume_later = None
        for sock in self._sockets:
            sock.close()

    def get_loop(self) -> asyncio.AbstractEventLoop:  # noqa: D102
        return self._loop

    def is_serving(self) -> bool:  # noqa: D102
        return not self._closed

    async def start_serving(self) -> None:  # noqa: D102 - it serves from listen() on
        return None

    async def serve_forever(self) -> None:  # noqa: D102
        raise NotImplementedError("onionchat's runner drives the acceptor")

    async def wait_closed(self) -> None:
        """Wait until the connections being handed to the loop are handed over."""
        if self._starting:
            await asyncio.gather(*self._starting, return_exceptions=True)
