"""Benchmark 6: a counsellor's message reaching the visitor's held frame through a private Tor network.

Everything runs on 127.0.0.1: tests/tornet.py's network (3 authorities, 3 relays), onionchat
publishing both onions through a tor it launches and joins to that network, and one Tor client
for the visitor and one for the counsellor. No tor here can reach the real Tor network: every
node knows only the loopback authorities.
"""

from __future__ import annotations

import asyncio
import random
import re
import shutil
import time
from pathlib import Path
from typing import Any

from bench.proc import PASSWORD, Server, running
from bench.report import Row, ms, percentile

CSRF = re.compile(r'name="_csrf" value="([^"]+)"')
TOKEN = re.compile(r"tor-delivery-(\d{4})")
FIRST_FETCH_SECONDS = 90.0  # a just-published onion: tor retries rendezvous paths for a while
HOLD_SECONDS = 20


def tor_session(socks_port: int) -> Any:
    """An aiohttp client whose every connection goes through a Tor client's SocksPort (names resolved by tor)."""
    import aiohttp
    from aiohttp_socks import ProxyConnector

    connector = ProxyConnector.from_url(f"socks5://127.0.0.1:{socks_port}", rdns=True)
    return aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=HOLD_SECONDS * 2))


async def fetch(session: Any, method: str, url: str, data: dict[str, str] | None = None) -> tuple[int, str, str]:
    """Status, Location header (for redirects) and text of one request."""
    async with session.request(method, url, data=data, allow_redirects=False) as response:
        return response.status, response.headers.get("Location", ""), await response.text()


async def first_fetch(session: Any, url: str) -> str:
    """GET ``url``, retrying while the onion's descriptor spreads; the page."""
    deadline = time.monotonic() + FIRST_FETCH_SECONDS
    while True:
        try:
            status, _, page = await fetch(session, "GET", url)
            if status == 200:
                return page
        except Exception as exc:  # SOCKS 0xF0/0xF2 and closed circuits while the descriptor spreads
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} still unreachable through Tor after {FIRST_FETCH_SECONDS:.0f} s: "
                                   f"{exc!r}") from exc
        await asyncio.sleep(0.5)  # between attempts of a polling loop with a deadline


def token(page: str) -> str:
    """The CSRF token of the first form in ``page``."""
    found = CSRF.search(page)
    if found is None:
        raise RuntimeError("no CSRF token in the page")
    return found.group(1)


async def chat_through_tor(visitor_onion: str, staff_onion: str, visitor_socks: int, staff_socks: int,
                           messages: int) -> tuple[list[float], list[float], float]:
    """Open a chat over Tor and send ``messages`` counsellor messages.

    Returns the delivery times (the counsellor starts the POST -> the visitor's held frame has
    the message), the counsellor's POST round trips, and the time the whole set-up took.
    """
    visitor_url, staff_url = f"http://{visitor_onion}", f"http://{staff_onion}"
    began = time.monotonic()
    async with tor_session(visitor_socks) as visitor, tor_session(staff_socks) as staff:
        login = await first_fetch(staff, f"{staff_url}/login")
        status, where, _ = await fetch(staff, "POST", f"{staff_url}/login",
                                       {"_csrf": token(login), "username": "c000", "password": PASSWORD})
        if (status, where) != (303, "/"):
            raise RuntimeError(f"counsellor login over Tor: {status} {where}")
        # The workspace's board frame, as the browser loads it: the counsellor is now present
        # (available and asking), so the visitor is let into the line.
        await fetch(staff, "GET", f"{staff_url}/board")
        landing = await first_fetch(visitor, f"{visitor_url}/")
        status, _, _ = await fetch(visitor, "POST", f"{visitor_url}/start",
                                   {"_csrf": token(landing), "nickname": "tor"})
        if status != 303:
            raise RuntimeError(f"start chat over Tor: {status}")
        _, _, board = await fetch(staff, "GET", f"{staff_url}/board?paused=1")  # paused: the whole line
        cid = re.search(r'action="/accept/([^"]+)"', board)
        if cid is None:
            raise RuntimeError("the visitor is not in the counsellor's queue")
        status, _, _ = await fetch(staff, "POST", f"{staff_url}/accept/{cid.group(1)}", {"_csrf": token(board)})
        _, _, compose = await fetch(staff, "GET", f"{staff_url}/chat/{cid.group(1)}/compose")
        csrf = token(compose)
        seen: dict[int, float] = {}

        async def follow_frame() -> None:
            """The visitor's messages frame: each answer's Refresh URL asked at once, as a browser does."""
            path = "/chat/messages"
            while True:
                async with visitor.get(f"{visitor_url}{path}", allow_redirects=False) as response:
                    page = await response.text()
                    refresh = response.headers.get("Refresh", "")
                now = time.monotonic()
                for number in TOKEN.findall(page):
                    seen.setdefault(int(number), now)
                path = refresh.partition("url=")[2].partition("#")[0] or "/chat/messages"

        frame = asyncio.ensure_future(follow_frame())
        setup = time.monotonic() - began
        delivery: list[float] = []
        round_trips: list[float] = []
        try:
            await asyncio.sleep(2.0)  # the frame's first answer and its next (held) request are on their way
            for n in range(messages):
                sent = time.monotonic()
                status, _, _ = await fetch(staff, "POST", f"{staff_url}/chat/{cid.group(1)}/send",
                                           {"_csrf": csrf, "text": f"tor-delivery-{n:04d}"})
                round_trips.append(time.monotonic() - sent)
                if status != 303:
                    raise RuntimeError(f"counsellor send over Tor: {status}")
                deadline = time.monotonic() + 30
                while n not in seen:
                    if frame.done() or time.monotonic() > deadline:
                        raise RuntimeError(f"message {n} did not reach the visitor's frame within 30 s"
                                           + (f": {frame.exception()!r}" if frame.done() else ""))
                    await asyncio.sleep(0.005)  # polling the client's own record, with a deadline
                delivery.append(seen[n] - sent)
                # A person writes every few seconds; a pause lets the frame's next request reach the server.
                await asyncio.sleep(random.uniform(0.3, 0.8))  # noqa: S311 - spacing, not security
        finally:
            frame.cancel()
    return delivery, round_trips, setup


def tor_delivery(work: Path, accounts: Path, messages: int, notes: list[str]) -> list[Row]:
    """Benchmark 6: private Tor network, onionchat on it, ``messages`` timed deliveries."""
    if shutil.which("tor") is None or shutil.which("tor-gencert") is None:
        raise RuntimeError("tor is not installed (apt-get install -y tor)")
    from tests.tornet import TorNetwork  # the tests' private network on loopback

    net = TorNetwork(base=work / "tornet")
    try:
        began = time.monotonic()
        net.start()
        visitor_client = net.add_client("visitor", wait=False)
        staff_client = net.add_client("desk", wait=False)
        net.wait_ready(visitor_client, 120)
        net.wait_ready(staff_client, 120)
        network_ready = time.monotonic() - began
        settings: dict[str, dict[str, Any]] = {
            "poll": {"hold_seconds": HOLD_SECONDS},
            # Staff over Tor without a client key (the bench's counsellor has none): a warning, not an error.
            "tor": {"mode": "launch", "extra_torrc": net.join_lines(), "staff_client_auth": False,
                    "bootstrap_timeout": 120}}
        server = Server(work, "tor", settings, accounts, local=False)
        with running(server):
            published = time.monotonic() - began - network_ready
            delivery, round_trips, setup = asyncio.run(chat_through_tor(
                server.printed["visitor"].removeprefix("http://").rstrip("/"),
                server.printed["staff"].removeprefix("http://").rstrip("/"),
                visitor_client.socks_port, staff_client.socks_port, messages))
        notes.extend(f"6 tor delivery: {p}" for p in server.problems())
    finally:
        net.stop()
    bench = "6 delivery through Tor"
    return [
        Row(bench, "delivery p50", ms(percentile(delivery, 50)), "counsellor starts Send -> visitor's frame"),
        Row(bench, "delivery p90", ms(percentile(delivery, 90)), f"{len(delivery)} messages, 0 lost"),
        Row(bench, "delivery max", ms(max(delivery))),
        Row(bench, "counsellor's send p50", ms(percentile(round_trips, 50)), "POST -> 303 through Tor"),
        Row(bench, "set-up", f"{network_ready:.0f} s + {published:.0f} s + {setup:.0f} s",
            "network ready + onions published + first fetches, login, accept"),
    ]

