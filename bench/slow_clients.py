"""Slow clients: 500 connections dribbling their headers byte by byte must not delay other visitors.

Run: .venv/bin/python -m bench.slow_clients [--slow 500] [--visitors 20] [--rounds 20] [--idle 15]
Measures, without and then with the slow connections: a frame's answer time (not held) and the
delivery time of a counsellor's message to a visitor's held frame; then waits until
``[limits] connection_idle_seconds`` (``--idle``) has passed and counts the slow connections
the server has not closed.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from bench.proc import PASSWORD, Server, make_accounts
from onionchat.web.server import raise_open_file_limit

CSRF_RE = re.compile(r'name="_csrf" value="([^"]+)"')


def refresh_of(response: aiohttp.ClientResponse) -> str:
    """The URL a frame's Refresh header leads to."""
    value = response.headers.get("Refresh", "")
    return value.split("url=", 1)[1].split("#")[0] if "url=" in value else ""


async def csrf(session: aiohttp.ClientSession, url: str) -> str:
    """The CSRF token of the page at ``url``."""
    async with session.get(url) as response:
        match = CSRF_RE.search(await response.text())
    assert match, url
    return match.group(1)


async def dribble(port: int, stop: asyncio.Event, sent: list[int], open_now: list[int]) -> None:
    """A slowloris connection: a request line and an endless header, one byte at a time."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return
    open_now[0] += 1
    payload = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 4000
    try:
        for byte in payload:
            if stop.is_set() or reader.at_eof():
                break
            writer.write(bytes([byte]))
            await writer.drain()
            sent[0] += 1
            await asyncio.sleep(0.1)  # the dribble itself: one byte per 100 ms
    except (ConnectionError, OSError):
        pass
    finally:
        open_now[0] -= 1
        writer.close()


async def measure(visitor_url: str, staff_url: str, pairs: list[tuple[aiohttp.ClientSession, str]],
                  staff: aiohttp.ClientSession, staff_csrf: str, rounds: int) -> tuple[list[float], list[float]]:
    """Frame answer times and held-frame delivery times over ``rounds`` rounds of every chat."""
    answers: list[float] = []
    deliveries: list[float] = []
    for r in range(rounds):
        for session, cid in pairs:
            began = time.perf_counter()
            async with session.get(visitor_url + "chat/messages") as response:
                await response.read()
                next_url = refresh_of(response)
            answers.append(time.perf_counter() - began)
            held = asyncio.create_task(session.get(visitor_url + next_url.lstrip("/")))
            await asyncio.sleep(0.05)  # the browser's held request is in flight before the reply
            began = time.perf_counter()
            async with staff.post(staff_url + f"chat/{cid}/send", allow_redirects=False,
                                  data={"_csrf": staff_csrf, "text": f"round {r}", "action": "send"}) as response:
                assert response.status == 303, response.status
            response = await held
            body = await response.text()
            deliveries.append(time.perf_counter() - began)
            assert f"round {r}" in body
    return answers, deliveries


def summary(name: str, values: list[float]) -> str:
    """Median, p90 and max in milliseconds."""
    ordered = sorted(values)
    p90 = ordered[int(len(ordered) * 0.9)]
    return (f"{name}: median {statistics.median(ordered) * 1000:.1f} ms, p90 {p90 * 1000:.1f} ms, "
            f"max {ordered[-1] * 1000:.1f} ms")


async def main(args: argparse.Namespace) -> int:
    """Measure without, then with the slow connections; 0 if delivery is not slowed by 100 ms."""
    raise_open_file_limit(20000)
    work = Path(tempfile.mkdtemp(prefix="onionchat-slow-"))
    server = Server(work, "server", {"poll": {"hold_seconds": 20}, "hours": {"open_without_staff": True},
                                     "staff": {"max_chats": 50},
                                     "limits": {"connection_idle_seconds": args.idle}},
                    accounts=make_accounts(work / "accounts", ["carla"]))
    server.start()
    visitor_url = f"http://127.0.0.1:{server.visitor_port}/"
    staff_url = f"http://127.0.0.1:{server.staff_port}/"
    sessions: list[aiohttp.ClientSession] = []
    try:
        staff = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        sessions.append(staff)
        token = await csrf(staff, staff_url + "login")
        async with staff.post(staff_url + "login", data={"_csrf": token, "username": "carla", "password": PASSWORD}):
            pass
        staff_csrf = await csrf(staff, staff_url)
        pairs = []
        for i in range(args.visitors):
            session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
            sessions.append(session)
            token = await csrf(session, visitor_url)
            async with session.post(visitor_url + "start", data={"_csrf": token, "nickname": f"v{i}"}):
                pass
            async with staff.post(staff_url + "accept-next", data={"_csrf": staff_csrf},
                                  allow_redirects=False) as response:
                pairs.append((session, response.headers["Location"].rsplit("/", 1)[1]))
        quiet = await measure(visitor_url, staff_url, pairs, staff, staff_csrf, args.rounds)
        # The dribblers run in their own process: their 5,000 writes a second must not slow
        # the measuring client, only (if at all) the server.
        dribblers = subprocess.Popen(  # noqa: S603 - this very script, fixed arguments
            [sys.executable, "-m", "bench.slow_clients", "--dribble", str(server.visitor_port),
             "--slow", str(args.slow)], stdout=subprocess.PIPE)
        assert dribblers.stdout is not None
        connected = int(dribblers.stdout.readline())  # printed once every connection is open
        connected_at = time.monotonic()
        busy = await measure(visitor_url, staff_url, pairs, staff, staff_csrf, args.rounds)
        # The server closes a connection without a whole request after the idle time.
        await asyncio.sleep(max(0.0, connected_at + args.idle + 5 - time.monotonic()))
        dribblers.send_signal(signal.SIGTERM)
        sent, still_open = (int(x) for x in dribblers.stdout.readline().split())
        dribblers.wait(30)
        dribblers.stdout.close()
    finally:
        for session in sessions:
            await session.close()
        server.stop()
    print(f"slow clients: {args.visitors} chatting visitors, {args.rounds} rounds each")
    print(f"  without slow clients: {summary('frame answer', quiet[0])}; {summary('delivery', quiet[1])}")
    print(f"  with {connected} dribbling connections ({sent} bytes dribbled; {still_open} still open "
          f"{args.idle + 5} s after connecting, with connection_idle_seconds = {args.idle}):")
    print(f"                        {summary('frame answer', busy[0])}; {summary('delivery', busy[1])}")
    print(f"  server exit after SIGTERM: {server.returncode} in {server.stop_seconds:.1f} s; "
          f"log problems: {server.problems() or 'none'}")
    slower = statistics.median(busy[1]) - statistics.median(quiet[1])
    return 0 if connected == args.slow and slower < 0.1 and still_open == 0 else 1


async def dribble_only(port: int, count: int) -> None:
    """The dribbling process: open ``count`` slow connections, report, dribble until SIGTERM."""
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    sent, open_now = [0], [0]
    slow = [asyncio.create_task(dribble(port, stop, sent, open_now)) for _ in range(count)]
    deadline = time.monotonic() + 30
    while open_now[0] < count and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    print(open_now[0], flush=True)
    await stop.wait()
    still_open = open_now[0]
    await asyncio.gather(*slow)
    print(sent[0], still_open, flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--slow", type=int, default=500)
    parser.add_argument("--visitors", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--idle", type=int, default=15, help="the server's [limits] connection_idle_seconds")
    parser.add_argument("--dribble", type=int, default=0, help=argparse.SUPPRESS)  # the helper process
    parsed = parser.parse_args()
    if parsed.dribble:
        asyncio.run(dribble_only(parsed.dribble, parsed.slow))
        sys.exit(0)
    sys.exit(asyncio.run(main(parsed)))
