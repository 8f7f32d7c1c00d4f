"""Limits: each refused with a clear page while another visitor's conversation keeps working."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import resource
import secrets
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import onionchat.staff
import onionchat.visitor
from onionchat.config import Config
from onionchat.web.acceptor import Acceptor
from onionchat.web.app import Services
from onionchat.web.server import FILES_RESERVED, OPEN_FILES_WANTED, fit_connections
from tests.conftest import AiohttpClient, Site, make_services, private_client, start_chat, with_limits
from tests.liveserver import LOOPBACK, live_server, next_frame_url, visitor_in_chat


class Line:
    """A helpline with one counsellor (carla) and a visitor already chatting with her."""

    def __init__(self, services: Services, aiohttp_client: AiohttpClient) -> None:
        self.services = services
        self.aiohttp_client = aiohttp_client
        self.visitor_app = onionchat.visitor.create_app(services)
        self.staff_app = onionchat.staff.create_app(services)

    async def visitor(self) -> Site:
        site = Site(await private_client(self.aiohttp_client, self.visitor_app))
        await site.get("/")
        return site

    async def setup(self) -> None:
        self.bystander = await self.visitor()
        await start_chat(self.bystander, "bystander")
        self.cid = next(iter(self.services.chat)).id
        self.carla = Site(await private_client(self.aiohttp_client, self.staff_app))
        await self.carla.get("/login")
        await self.carla.post("/login", {"username": "carla", "password": "a long enough test password"})
        await self.carla.get("/")
        assert (await self.carla.post(f"/accept/{self.cid}"))[0].status == 303
        await self.carla.get(f"/chat/{self.cid}/compose")

    async def still_works(self) -> None:
        """The bystander and carla still exchange messages both ways."""
        word = secrets.token_hex(4)
        assert (await self.bystander.post("/chat/send", {"text": f"from visitor {word}"}))[0].status == 303
        _, staff_view = await self.carla.get(f"/chat/{self.cid}/messages")
        assert f"from visitor {word}" in staff_view
        response, _ = await self.carla.post(f"/chat/{self.cid}/send", {"text": f"from carla {word}", "action": "send"})
        assert response.status == 303
        _, frame = await self.bystander.get("/chat/messages")
        assert f"from carla {word}" in frame


async def line(config: Config, aiohttp_client: AiohttpClient, **limits: Any) -> Line:
    result = Line(make_services(with_limits(config, **limits)), aiohttp_client)
    await result.setup()
    return result


@pytest.mark.parametrize("path", ["/start", "/resume", "/chat/send", "/chat/urgent", "/chat/leave"])
async def test_oversized_bodies_get_too_much_text(config: Config, aiohttp_client: AiohttpClient, path: str) -> None:
    helpline = await line(config, aiohttp_client)
    mallory = await helpline.visitor()
    await start_chat(mallory)
    size = helpline.services.config.limits.body_bytes
    for body in (b"_csrf=" + mallory.csrf.encode() + b"&text=" + b"A" * size, b"x" * (size * 50)):
        response = await mallory.client.post(path, data=body,
                                             headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert response.status == 413 and "Too much text" in await response.text()
    await helpline.still_works()


async def test_a_message_flood_from_one_session_slows_only_that_session(config: Config,
                                                                        aiohttp_client: AiohttpClient) -> None:
    helpline = await line(config, aiohttp_client, messages_per_minute=10)
    flooder = await helpline.visitor()
    await start_chat(flooder)
    await flooder.get("/chat/compose")
    statuses = []
    for i in range(25):
        response, page = await flooder.post("/chat/send", {"text": f"flood {i}"})
        statuses.append(response.status)
    assert statuses == [303] * 10 + [429] * 15
    assert "Slow down a little" in page and "flood 24</textarea>" in page, "the typed text is kept"
    flood_conv = next(c for c in helpline.services.chat if c.id != helpline.cid)
    assert [m.text for m in flood_conv.messages] == [f"flood {i}" for i in range(10)]
    await helpline.still_works()


async def test_the_queue_at_capacity(config: Config, aiohttp_client: AiohttpClient) -> None:
    helpline = await line(config, aiohttp_client, queue_length=3)
    for _ in range(3):
        await start_chat(await helpline.visitor())
    late = await helpline.visitor()
    response, page = await late.post("/start", {"nickname": "late"})
    assert response.status == 503 and "All counsellors are busy" in page and "Quick exit" in page
    _, landing = await (await helpline.visitor()).get("/")
    assert "All counsellors are busy" in landing or "full" in landing.lower()
    await helpline.still_works()


async def test_conversations_at_capacity(config: Config, aiohttp_client: AiohttpClient) -> None:
    helpline = await line(config, aiohttp_client, conversations=3)
    for _ in range(2):
        await start_chat(await helpline.visitor())
    late = await helpline.visitor()
    response, page = await late.post("/start", {"nickname": "late"})
    assert response.status == 503 and "Very busy right now" in page
    assert len(helpline.services.chat) == 3
    await helpline.still_works()


async def test_a_conversation_at_its_message_limit(config: Config, aiohttp_client: AiohttpClient) -> None:
    helpline = await line(config, aiohttp_client, messages_per_conversation=12, messages_per_minute=1000)
    talker = await helpline.visitor()
    await start_chat(talker)
    await talker.get("/chat/compose")
    last = None
    for i in range(20):
        last = await talker.post("/chat/send", {"text": f"line {i}"})
    assert last is not None
    response, page = last
    assert response.status == 413 and "This chat is full" in page
    await helpline.still_works()


async def test_a_flood_of_page_loads_never_pushes_out_a_chatting_visitor(config: Config,
                                                                          aiohttp_client: AiohttpClient) -> None:
    helpline = await line(config, aiohttp_client, sessions=20)
    chatting = [helpline.bystander]
    for _ in range(5):
        visitor = await helpline.visitor()
        await start_chat(visitor)
        chatting.append(visitor)
    flood = Site(await private_client(aiohttp_client, helpline.visitor_app))
    statuses = set()
    for _ in range(300):  # every load without a cookie is a new session
        flood.client.session.cookie_jar.clear()
        statuses.add((await flood.get("/"))[0].status)
    assert statuses == {200}, "bare page views make room for each other"
    assert len(helpline.services.visitor_sessions) <= 20
    for visitor in chatting:
        response, frame = await visitor.get("/chat/messages")
        assert response.status == 200 and ("in line" in frame or "joined the chat" in frame), frame[-900:]
    await helpline.still_works()


async def test_sessions_all_chatting_refuse_a_newcomer_clearly(config: Config,
                                                               aiohttp_client: AiohttpClient) -> None:
    helpline = await line(config, aiohttp_client, sessions=4)
    for _ in range(3):
        await start_chat(await helpline.visitor())
    newcomer = Site(await private_client(aiohttp_client, helpline.visitor_app))
    response, page = await newcomer.get("/")
    assert response.status == 503 and "Very busy right now" in page
    await helpline.still_works()


FULL_HOUSE = 1_200  # connections open at once: more than the usual soft limit of 1,024 open files
SHELL_SOFT_LIMIT = 1_024


async def all_answered(port: int, count: int) -> int:
    """Open ``count`` connections and keep them all open; then one request on each. How many got 200."""
    streams: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def ask(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"GET /static/style.css HTTP/1.1\r\nHost: onion\r\n\r\n")
        return (await reader.readline()).startswith(b"HTTP/1.1 200")

    try:
        async with asyncio.timeout(60):  # a server out of file descriptors never accepts the rest
            for start in range(0, count, 100):  # in batches: the listen backlog is finite
                streams += await asyncio.gather(*(asyncio.open_connection(LOOPBACK, port)
                                                  for _ in range(min(100, count - start))))
            return sum(await asyncio.gather(*(ask(r, w) for r, w in streams)))
    finally:
        for _, writer in streams:
            writer.close()


@contextlib.contextmanager
def soft_file_limit(limit: int) -> Iterator[None]:
    """Run this process (and what it starts meanwhile) with a soft open-file limit of at most ``limit``."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(limit, soft), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_a_full_house_of_connections_gets_through_despite_a_low_soft_file_limit(tmp_path: Path) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    expected = min(OPEN_FILES_WANTED, hard) if hard != resource.RLIM_INFINITY else OPEN_FILES_WANTED
    with contextlib.ExitStack() as stack:
        with soft_file_limit(SHELL_SOFT_LIMIT):  # started the way a shell or systemd leaves it
            server = stack.enter_context(live_server(tmp_path))
        limits = Path(f"/proc/{server.process.pid}/limits").read_text()
        line = next(x for x in limits.splitlines() if x.startswith("Max open files"))
        assert int(line.split()[3]) == expected, line
        if expected < FULL_HOUSE + 100:
            # A machine whose hard limit is low: the administrator is told at start-up.
            assert "open files are allowed" in server.log
        else:
            assert soft >= FULL_HOUSE + 100, "this test's own process needs the file descriptors"
            assert asyncio.run(all_answered(server.visitor_port, FULL_HOUSE)) == FULL_HOUSE
            assert "open files are allowed" not in server.log


async def test_silent_and_dribbling_clients_are_cut_off_while_a_held_frame_is_answered(tmp_path: Path) -> None:
    idle = 5  # the least the setting allows
    settings: dict[str, dict[str, Any]] = {"limits": {"connection_idle_seconds": idle},
                                           "poll": {"hold_seconds": idle * 2},
                                           "hours": {"open_without_staff": True}}
    with live_server(tmp_path, settings) as server:
        host, port = LOOPBACK, server.visitor_port
        cookie = await visitor_in_chat(server, "Ana")
        refresh = await next_frame_url(server, cookie)
        # Ana's frame asks for its next version: held for twice the idle time, as nothing changes.
        frame_reader, frame_writer = await asyncio.open_connection(host, port)
        frame_writer.write(f"GET {refresh} HTTP/1.1\r\nHost: onion\r\nCookie: {cookie}\r\n\r\n".encode())
        silent_reader, silent_writer = await asyncio.open_connection(host, port)  # connects, sends nothing
        slow_reader, slow_writer = await asyncio.open_connection(host, port)

        async def dribble() -> None:
            """A request head that never ends: one byte every half second."""
            slow_writer.write(b"GET / HTTP/1.1\r\n")
            for byte in itertools.cycle(b"X-Slow: a\r\n"):
                slow_writer.write(bytes([byte]))
                await slow_writer.drain()
                await asyncio.sleep(0.5)

        dribbling = asyncio.create_task(dribble())
        try:
            async with asyncio.timeout(idle * 6):  # aiohttp's own default would keep them for an hour
                silent, slow, frame = await asyncio.gather(silent_reader.read(), slow_reader.read(),
                                                           frame_reader.readline())
        finally:
            dribbling.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await dribbling
            for writer in (frame_writer, silent_writer, slow_writer):
                writer.close()
        assert silent == b"" and slow == b"", "closed without an answer"
        assert frame.startswith(b"HTTP/1.1 200"), frame


async def test_at_the_connection_ceiling_newcomers_wait_and_get_in_as_soon_as_one_closes(tmp_path: Path) -> None:
    ceiling = 64  # the least limits.open_connections allows
    settings: dict[str, dict[str, Any]] = {"limits": {"open_connections": ceiling}}
    request = b"GET / HTTP/1.1\r\nHost: onion\r\nConnection: close\r\n\r\n"
    with live_server(tmp_path, settings) as server:
        held = [await asyncio.open_connection(LOOPBACK, server.visitor_port) for _ in range(ceiling)]
        waiting: list[asyncio.StreamWriter] = []
        try:
            # Past the ceiling a connection is neither refused nor served: it waits in the queue.
            newcomers = []
            for _ in range(3):
                reader, writer = await asyncio.open_connection(LOOPBACK, server.visitor_port)
                writer.write(request)
                newcomers.append(reader)
                waiting.append(writer)
            first = asyncio.ensure_future(newcomers[0].readline())
            done, _ = await asyncio.wait([first], timeout=1)
            assert not done, "no answer while the site holds as many connections as it may"
            # As soon as connections close, the waiting ones are served; none was lost.
            for _, writer in held[:3]:
                writer.close()
            async with asyncio.timeout(10):
                heads = [await first] + [await reader.readline() for reader in newcomers[1:]]
            assert all(head.startswith(b"HTTP/1.1 200") for head in heads), heads
            # The listener lives on: more visitors are served as connections come and go.
            for _, writer in held[3:10]:
                writer.close()
            for _ in range(5):
                reader, writer = await asyncio.open_connection(LOOPBACK, server.visitor_port)
                waiting.append(writer)
                writer.write(request)
                async with asyncio.timeout(10):
                    assert (await reader.readline()).startswith(b"HTTP/1.1 200")
        finally:
            for _, writer in held:
                writer.close()
            for writer in waiting:
                writer.close()
    assert "Traceback" not in server.log


@pytest.mark.parametrize(("files", "visitor_ceiling", "staff_ceiling"),
                         [(512, 512 - 64 - FILES_RESERVED, 64), (65_536, 12_000, 2_000)])
def test_connection_ceilings_stay_below_the_open_file_limit(config: Config, files: int, visitor_ceiling: int,
                                                            staff_ceiling: int) -> None:
    services = make_services(with_limits(config, open_connections=12_000))
    fit_connections(services, files)
    assert services.visitor_listener.max_open == visitor_ceiling
    assert services.staff_listener.max_open == staff_ceiling


async def test_out_of_files_the_acceptor_pauses_reports_and_serves_the_newcomer_after() -> None:
    loop = asyncio.get_running_loop()
    reports: list[str] = []
    loop.set_exception_handler(lambda _, context: reports.append(context["message"]))
    served = asyncio.Event()

    class Served(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            served.set()
            transport.close()

    acceptor = await Acceptor.listen(LOOPBACK, 0, 16, Served, lambda pending: True)
    port = acceptor.sockets[0].getsockname()[1]
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    client = socket.create_connection((LOOPBACK, port))  # in the listen queue: not accepted yet
    fillers: list[int] = []
    try:
        # No file left for accept(): the limit just above the highest open one, every hole filled.
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(map(int, os.listdir("/proc/self/fd"))) + 1, hard))
        with contextlib.suppress(OSError):
            while True:
                fillers.append(os.open(os.devnull, os.O_RDONLY))
        async with asyncio.timeout(5):
            while not reports:
                await asyncio.sleep(0.01)  # the acceptor's turn in the loop
        assert not served.is_set()
    finally:
        for fd in fillers:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    try:
        async with asyncio.timeout(5):  # files are free again: the waiting connection is served
            await served.wait()
        assert reports[0] == "socket.accept() out of system resource"
        assert acceptor.is_serving()
    finally:
        client.close()
        acceptor.close()
        loop.set_exception_handler(None)
