"""Budgets per Tor circuit against a real ``onionchat serve``, through real sockets with tor's PROXY lines.

The server runs with ``server.proxy_protocol = "on"``: every connection must start as tor
starts it, with a PROXY line naming a circuit. Each simulated visitor writes the line of
their own circuit, as tor would for a Tor Browser.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from tests.liveserver import LOOPBACK, LiveServer, live_server, proxy_line

CSRF = re.compile(rb'name="_csrf" value="([^"]+)"')


class Answer:
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body

    @property
    def cookie(self) -> str:
        found = re.search(r"(oc_visitor=[^;]+)", self.headers.get("set-cookie", ""))
        return found.group(1) if found else ""

    @property
    def csrf(self) -> str:
        found = CSRF.search(self.body)
        assert found, self.body[:300]
        return found.group(1).decode()


async def read_answer(reader: asyncio.StreamReader) -> Answer:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return Answer(int(lines[0].split()[1]), headers, body)


def request_bytes(method: str, path: str, cookie: str = "", form: dict[str, str] | None = None) -> bytes:
    body = urlencode(form).encode() if form is not None else b""
    head = [f"{method} {path} HTTP/1.1", "Host: onion"]
    if cookie:
        head.append(f"Cookie: {cookie}")
    if form is not None:
        head += ["Content-Type: application/x-www-form-urlencoded", f"Content-Length: {len(body)}"]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


async def ask(server: LiveServer, circuit: int, method: str, path: str, **kwargs: Any) -> Answer:
    """One request on a new connection of ``circuit``; the answer."""
    reader, writer = await asyncio.open_connection(LOOPBACK, server.visitor_port)
    try:
        writer.write(proxy_line(circuit) + request_bytes(method, path, **kwargs))
        async with asyncio.timeout(10):
            return await read_answer(reader)
    finally:
        writer.close()


async def status_line(server: LiveServer, first_bytes: bytes, pieces: int = 1) -> bytes:
    """Send ``first_bytes`` (in ``pieces``) and a request; the answer's status line (b"": closed without one)."""
    reader, writer = await asyncio.open_connection(LOOPBACK, server.visitor_port)
    try:
        data = first_bytes + request_bytes("GET", "/static/style.css")
        size = -(-len(data) // pieces)
        for start in range(0, len(data), size):
            writer.write(data[start:start + size])
            await writer.drain()
            await asyncio.sleep(0.02)  # separate segments, as a slow network delivers them
        async with asyncio.timeout(10):
            return await reader.readline()
    except ConnectionError:
        return b""
    finally:
        writer.close()


async def status(server: LiveServer, circuit: int, path: str) -> int:
    """The status of GET ``path`` on a new connection of ``circuit``; 0 if it was closed without an answer."""
    try:
        return (await ask(server, circuit, "GET", path)).status
    except (asyncio.IncompleteReadError, ConnectionError):
        return 0


SETTINGS: dict[str, dict[str, Any]] = {
    "server": {"proxy_protocol": "on"},
    "hours": {"open_without_staff": True},
    # Requests per second out of the way: each test reaches the budget it is about.
    "circuits": {"sessions": 5, "chats": 2, "strikes": 10, "penalty_minutes": 10, "requests_per_second": 1000},
    "limits": {"request_seconds": 3},
}


async def test_circuits_are_told_apart_by_tors_proxy_line_and_each_has_its_own_budget(tmp_path: Path) -> None:
    with live_server(tmp_path, SETTINGS) as server:
        # The line itself: split over several segments is fine; missing, garbled or endless is not.
        assert (await status_line(server, proxy_line(4242), pieces=7)).startswith(b"HTTP/1.1 200")
        assert await status_line(server, b"") == b""
        assert await status_line(server, b"PROXY TCP4 10.0.0.1 10.0.0.2 1 2\r\n") == b""
        assert await status_line(server, b"PROXY TCP6 " + b"f" * 200 + b"\r\n") == b""

        # First visits: five per circuit per ten minutes, then the calm page; another circuit is untouched.
        firsts = [(await ask(server, 1, "GET", "/")).status for _ in range(7)]
        assert firsts == [200] * 5 + [429] * 2
        refused = await ask(server, 1, "GET", "/")
        assert "Please wait a few minutes" in refused.body.decode() and refused.cookie == ""
        welcome = await ask(server, 2, "GET", "/")
        assert welcome.status == 200 and 'action="/start"' in welcome.body.decode()

        # Chats: two at once per circuit; the third is refused calmly, while circuit 3 starts one.
        for _ in range(2):
            landing = await ask(server, 2, "GET", "/")
            started = await ask(server, 2, "POST", "/start", cookie=landing.cookie, form={"_csrf": landing.csrf})
            assert started.status == 303 and started.headers["location"] == "/chat"
        landing = await ask(server, 2, "GET", "/")
        third = await ask(server, 2, "POST", "/start", cookie=landing.cookie, form={"_csrf": landing.csrf})
        assert third.status == 429 and "Please wait a few minutes" in third.body.decode()
        other = await ask(server, 3, "GET", "/")
        started = await ask(server, 3, "POST", "/start", cookie=other.cookie, form={"_csrf": other.csrf})
        assert started.status == 303
    assert "PROXY" not in server.log and "fc00:" not in server.log, "circuit ids are never logged"


async def test_a_circuit_that_keeps_going_loses_its_connections_and_others_go_on(tmp_path: Path) -> None:
    with live_server(tmp_path, SETTINGS) as server:
        visitor = await ask(server, 7, "GET", "/")
        started = await ask(server, 7, "POST", "/start", cookie=visitor.cookie, form={"_csrf": visitor.csrf})
        cookie = started.cookie
        # The flooder's own connection, held open by a frame of its own chat.
        flood_landing = await ask(server, 666, "GET", "/")
        flood_chat = await ask(server, 666, "POST", "/start", cookie=flood_landing.cookie,
                               form={"_csrf": flood_landing.csrf})
        flood_frame = await ask(server, 666, "GET", "/chat/messages", cookie=flood_chat.cookie)
        reader, writer = await asyncio.open_connection(LOOPBACK, server.visitor_port)
        next_url = flood_frame.headers["refresh"].split("url=", 1)[1].split("#")[0]
        writer.write(proxy_line(666) + request_bytes("GET", next_url, cookie=flood_chat.cookie))
        await asyncio.sleep(0.3)
        statuses = [await status(server, 666, "/") for _ in range(5 + 10)]
        assert statuses[:4] == [200] * 4 and statuses[4] == 429 and statuses[-1] == 0, statuses
        async with asyncio.timeout(5):  # the held frame of the flooding circuit is cut off at once
            assert await reader.read() == b""
        writer.close()
        assert await status_line(server, proxy_line(666)) == b"", "and its new connections are refused"
        # The visitor on circuit 7 goes on: her frame is answered, she can write.
        mine = await ask(server, 7, "GET", "/chat/messages", cookie=cookie)
        assert mine.status == 200 and "in line" in mine.body.decode()
        compose = await ask(server, 7, "GET", "/chat/compose", cookie=cookie)
        sent = await ask(server, 7, "POST", "/chat/send", cookie=cookie, form={"_csrf": compose.csrf, "text": "hi"})
        assert sent.status == 303


async def test_a_request_must_arrive_whole_in_time_but_a_held_frame_is_not_cut_off(tmp_path: Path) -> None:
    settings = {**SETTINGS, "poll": {"hold_seconds": 6}}
    with live_server(tmp_path, settings) as server:
        visitor = await ask(server, 9, "GET", "/")
        started = await ask(server, 9, "POST", "/start", cookie=visitor.cookie, form={"_csrf": visitor.csrf})
        frame = await ask(server, 9, "GET", "/chat/messages", cookie=started.cookie)
        held_url = frame.headers["refresh"].split("url=", 1)[1].split("#")[0]
        held = asyncio.ensure_future(ask(server, 9, "GET", held_url, cookie=started.cookie))

        slow_reader, slow_writer = await asyncio.open_connection(LOOPBACK, server.visitor_port)
        landing = await ask(server, 10, "GET", "/")
        head = request_bytes("POST", "/start", cookie=landing.cookie).replace(
            b"\r\n\r\n", b"\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 16000\r\n\r\n")
        slow_writer.write(proxy_line(10) + head + b"_csrf=")
        began = time.monotonic()

        async def dribble() -> None:
            with contextlib.suppress(ConnectionError):
                while True:
                    slow_writer.write(b"a")
                    await slow_writer.drain()
                    await asyncio.sleep(0.2)

        dribbling = asyncio.ensure_future(dribble())
        try:
            async with asyncio.timeout(15):
                assert await slow_reader.read() == b"", "cut off without an answer"
            cut_after = time.monotonic() - began
        finally:
            dribbling.cancel()
            slow_writer.close()
        assert cut_after < 3 + 2, f"a body dribbled for {cut_after:.1f} s"
        answer = await held
        assert answer.status == 200, "the frame held for 6 s (longer than request_seconds) was answered"
    assert "Traceback" not in server.log and " ERROR " not in server.log
