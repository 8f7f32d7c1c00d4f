"""A minimal keep-alive HTTP/1.1 client on asyncio.Protocol, cheap enough for 10,000 held polls."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from urllib.parse import urlencode

# The client shares two cores with the server, so it must cost far less per request than
# the server does: no cookie jar, no header objects, one parse of the header block.
_CSRF_RE = re.compile(rb'name="_csrf" value="([^"]+)"')


class HttpError(Exception):
    """The server answered in a way the benchmark did not expect, or closed the connection."""


@dataclass(slots=True)
class Response:
    """Status, lower-cased headers (last one wins), Set-Cookie values, and the body."""

    status: int
    headers: dict[str, str]
    cookies: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    head_size: int = 0  # bytes of the status line and headers, the blank line included

    @property
    def size(self) -> int:
        """Bytes of the whole answer on the wire."""
        return self.head_size + len(self.body)

    def csrf(self) -> str:
        """The CSRF token of the first form in the page."""
        match = _CSRF_RE.search(self.body)
        if match is None:
            raise HttpError(f"no _csrf in a {self.status} page")
        return match.group(1).decode()

    def refresh_url(self) -> str:
        """The path of ``Refresh: N; url=PATH#fragment``, without the fragment."""
        value = self.headers.get("refresh", "")
        _, sep, url = value.partition("url=")
        if not sep:
            raise HttpError(f"no Refresh url in a {self.status} answer")
        return url.partition("#")[0]


class Connection(asyncio.Protocol):
    """One TCP connection to 127.0.0.1, one request at a time (as a browser frame does).

    Like a browser, it connects again when the server has closed it while idle (the server
    closes connections without a request after ``[limits] connection_idle_seconds``).
    ``prefix`` is written first on every connection (tor's PROXY line, to simulate a circuit).
    """

    def __init__(self, port: int, prefix: bytes = b"") -> None:
        self.port = port
        self.prefix = prefix
        self.ended_by_us = False
        self.transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._waiter: asyncio.Future[Response] | None = None
        self._head: tuple[int, dict[str, str], dict[str, str], int, int] | None = None
        self.closed = False

    @classmethod
    async def open(cls, port: int, timeout: float = 10.0, prefix: bytes = b"") -> Connection:
        """Connect to 127.0.0.1:``port``."""
        connection = cls(port, prefix)
        await connection.connect(timeout)
        return connection

    async def connect(self, timeout: float = 10.0) -> None:
        """(Re)connect this protocol object to the server."""
        self._buffer.clear()
        self._head = None
        self.closed = False
        async with asyncio.timeout(timeout):
            await asyncio.get_running_loop().create_connection(lambda: self, "127.0.0.1", self.port)

    # -- asyncio.Protocol --------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:  # noqa: D102
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        if self.prefix:
            transport.write(self.prefix)

    def data_received(self, data: bytes) -> None:  # noqa: D102
        self._buffer += data
        self._parse()

    def connection_lost(self, exc: Exception | None) -> None:  # noqa: D102
        self.closed = True
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(HttpError("connection closed by the server"))

    # -- requests --------------------------------------------------------------------

    def close(self) -> None:
        """Close the connection; a request in flight fails."""
        if self.transport is not None:
            self.transport.close()
        self.closed = True
        self.ended_by_us = True

    async def request(self, method: str, path: str, *, cookie: str = "", form: dict[str, str] | None = None,
                      raw: tuple[str, bytes] | None = None, timeout: float = 30.0) -> Response:
        """Send one request and wait (at most ``timeout`` seconds) for its whole answer.

        ``raw``: a body of its own, as (content type, bytes), e.g. a multipart form.
        """
        if self.ended_by_us:
            raise HttpError("connection is closed")
        if self.closed or self.transport is None:
            await self.connect()  # closed by the server while idle, as a browser would find it
        assert self.transport is not None
        if self._waiter is not None:
            raise HttpError("one request at a time")
        lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
        if cookie:
            lines.append(f"Cookie: {cookie}")
        body = b""
        if form is not None:
            body = urlencode(form).encode()
            lines.append("Content-Type: application/x-www-form-urlencoded")
        elif raw is not None:
            lines.append(f"Content-Type: {raw[0]}")
            body = raw[1]
        if body or method == "POST":
            lines.append(f"Content-Length: {len(body)}")
        waiter: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
        self._waiter = waiter
        self.transport.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        try:
            async with asyncio.timeout(timeout):
                return await waiter
        finally:
            self._waiter = None

    def _parse(self) -> None:
        if self._head is None:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            block = bytes(self._buffer[:end]).decode("latin-1").split("\r\n")
            del self._buffer[:end + 4]
            status = int(block[0].split(" ", 2)[1])
            headers: dict[str, str] = {}
            cookies: dict[str, str] = {}
            for line in block[1:]:
                name, _, value = line.partition(":")
                name = name.strip().lower()
                value = value.strip()
                headers[name] = value
                if name == "set-cookie":
                    cname, _, rest = value.partition("=")
                    cookies[cname] = rest.partition(";")[0].strip('"')
            if "chunked" in headers.get("transfer-encoding", ""):
                self._fail(HttpError("chunked answers are not expected from onionchat"))
                return
            self._head = (status, headers, cookies, int(headers.get("content-length", "0")), end + 4)
        status, headers, cookies, length, head_size = self._head
        if len(self._buffer) < length:
            return
        body = bytes(self._buffer[:length])
        del self._buffer[:length]
        self._head = None
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(Response(status, headers, cookies, body, head_size))

    def _fail(self, exc: Exception) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(exc)
        self.close()
