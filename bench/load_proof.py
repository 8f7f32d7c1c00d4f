"""Load proof: 2,000 visitors and 50 counsellors on loopback, held polls, every message delivered once, in order.

Run: .venv/bin/python -m bench.load_proof [--visitors 2000] [--counsellors 50] [--messages 5] [--ramp 60]
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from bench.proc import PASSWORD, Server, make_accounts
from onionchat.web.server import raise_open_file_limit

CSRF_RE = re.compile(r'name="_csrf" value="([^"]+)"')
TEXT_RE = re.compile(r'<li class="msg from-(visitor|staff)[^"]*"[^>]*>.*?<span class="text"[^>]*>([^<]*)</span>', re.S)
HOLD = 20


@dataclass
class Run:
    """Shared figures of one run."""

    messages: int
    errors: Counter[str] = field(default_factory=Counter)
    round_trips: list[float] = field(default_factory=list)
    delivered_ok: int = 0
    visitors_done: int = 0
    requests: int = 0

    def error(self, what: str) -> None:
        """Count one error of kind ``what``."""
        self.errors[what] += 1


def refresh_url(response: aiohttp.ClientResponse) -> str:
    """The next URL of a self-updating frame, as the browser follows its Refresh header."""
    value = response.headers.get("Refresh", "")
    return value.split("url=", 1)[1].split("#")[0] if "url=" in value else ""


class Browser:
    """One visitor's or counsellor's browser: its own cookies, a shared connection pool."""

    def __init__(self, base: str, connector: aiohttp.TCPConnector, run: Run) -> None:
        self.base = base
        self.run = run
        self.session = aiohttp.ClientSession(connector=connector, connector_owner=False,
                                             cookie_jar=aiohttp.CookieJar(unsafe=True),
                                             timeout=aiohttp.ClientTimeout(total=HOLD + 60))
        self.csrf = ""

    async def get(self, path: str) -> tuple[int, str, str]:
        """GET: status, page, and the Refresh URL to follow next."""
        self.run.requests += 1
        async with self.session.get(self.base + path, allow_redirects=False) as response:
            text = await response.text()
            match = CSRF_RE.search(text)
            if match:
                self.csrf = match.group(1)
            return response.status, text, refresh_url(response)

    async def post(self, path: str, data: dict[str, str], timeout: float | None = None) -> tuple[int, str]:
        """POST a form with the page's CSRF token: status and Location."""
        self.run.requests += 1
        async with self.session.post(self.base + path, data={"_csrf": self.csrf, **data}, allow_redirects=False,
                                     timeout=aiohttp.ClientTimeout(total=timeout) if timeout else None) as response:
            await response.read()
            return response.status, response.headers.get("Location", "")

    async def close(self) -> None:
        """Close the browser's session (not the shared pool)."""
        await self.session.close()


def texts(page: str, who: str) -> list[str]:
    """The texts of ``who``'s messages (visitor or staff) in a frame, in order."""
    return [text for author, text in TEXT_RE.findall(page) if author == who]


async def visitor(i: int, base: str, connector: aiohttp.TCPConnector, run: Run, deadline: float,
                  arrivals: asyncio.Queue[int], delay: float) -> None:
    """Join, then send m1..mK one after another, each after the counsellor's reply to the last."""
    await asyncio.sleep(delay)  # arrivals spread over the ramp, as people do not all click at once
    browser = Browser(base, connector, run)
    me = f"v{i}"
    try:
        await browser.get("/")
        status, _ = await browser.post("/start", {"nickname": me})
        if status != 303:
            run.error(f"start {status}")
            return
        arrivals.put_nowait(i)
        await browser.get("/chat")  # the frame set; the passphrase shown once
        url = "/chat/messages"
        sent, page = 0, ""
        sent_at = 0.0
        while time.monotonic() < deadline:
            status, page, next_url = await browser.get(url)
            if status != 200:
                run.error(f"visitor frame {status}")
                return
            replies = texts(page, "staff")
            if sent and f"{me}-r{sent}" in replies:
                run.round_trips.append(time.monotonic() - sent_at)
            if "joined the chat" in page and (sent == 0 or f"{me}-r{sent}" in replies):
                if sent == run.messages:
                    break
                sent += 1
                sent_at = time.monotonic()
                status, _ = await browser.post("/chat/send", {"text": f"{me}-m{sent}"})
                if status != 303:
                    run.error(f"visitor send {status}")
                    return
            url = next_url or url
        else:
            run.error("visitor ran out of time")
            return
        own = texts(page, "visitor")
        want_own = [f"{me}-m{n}" for n in range(1, run.messages + 1)]
        want_replies = [f"{me}-r{n}" for n in range(1, run.messages + 1)]
        if own != want_own or texts(page, "staff") != want_replies:
            run.error("visitor: messages missing, duplicated or out of order")
        else:
            run.delivered_ok += 1
        await browser.post("/chat/leave", {})
        run.visitors_done += 1
    except (aiohttp.ClientError, TimeoutError) as exc:
        run.error(f"visitor {type(exc).__name__}")
    finally:
        await browser.close()


async def counsellor(name: str, base: str, connector: aiohttp.TCPConnector, run: Run, deadline: float,
                     arrivals: asyncio.Queue[int], room: int, logged_in: list[str]) -> None:
    """Log in, take one visitor from the queue per arrival while there is room, answer every message.

    A browser's board would wake on every queue change; here the bench tells one counsellor
    per arrival instead, so that 50 boards do not turn each arrival into 100 requests.
    """
    browser = Browser(base, connector, run)
    chats: list[asyncio.Task[None]] = []
    try:
        await browser.get("/login")
        # 50 logins at once queue for one argon2 slot (64 MiB, t=4): a shift starting together.
        status, _ = await browser.post("/login", {"username": name, "password": PASSWORD}, timeout=600)
        logged_in.append(name)
        if status != 303:
            run.error(f"login {status}")
            return
        await browser.get("/")
        while len(chats) < room and time.monotonic() < deadline:
            try:
                await asyncio.wait_for(arrivals.get(), max(0.1, deadline - time.monotonic()))
            except TimeoutError:
                break
            status, location = await browser.post("/accept-next", {})
            if status == 303 and location.startswith("/chat/"):
                chats.append(asyncio.create_task(answer(browser, location.rsplit("/", 1)[1], run, deadline)))
            else:
                run.error(f"accept {status} {location}")
        await asyncio.gather(*chats)
    except (aiohttp.ClientError, TimeoutError) as exc:
        run.error(f"counsellor {type(exc).__name__}")
    finally:
        await browser.close()


async def answer(browser: Browser, cid: str, run: Run, deadline: float) -> None:
    """Follow one chat's held messages frame; reply to each visitor message exactly once."""
    url = f"/chat/{cid}/messages"
    replied = 0
    while time.monotonic() < deadline:
        status, page, next_url = await browser.get(url)
        if status != 200:
            run.error(f"staff frame {status}")
            return
        if "has left" in page or "left the chat" in page or not next_url:
            return  # the visitor left: the frame is final
        for text in texts(page, "visitor"):
            visitor_id, _, number = text.partition("-m")
            if number.isdigit() and int(number) == replied + 1:
                replied += 1
                status, _ = await browser.post(f"/chat/{cid}/send", {"text": f"{visitor_id}-r{number}",
                                                                      "action": "send"})
                if status != 303:
                    run.error(f"staff send {status}")
        url = next_url


async def main(args: argparse.Namespace) -> int:
    """Run the load, print the figures; 0 only with zero errors and every chat intact."""
    limit = raise_open_file_limit(40000)
    work = Path(tempfile.mkdtemp(prefix="onionchat-load-"))
    names = [f"c{n:02d}" for n in range(args.counsellors)]
    per = -(-args.visitors // args.counsellors)
    server = Server(work, "server", {
        "limits": {"queue_length": args.visitors, "conversations": args.visitors * 2, "sessions": args.visitors * 4,
                   "messages_per_minute": 1000},
        "staff": {"max_chats": min(50, per)},
        "poll": {"hold_seconds": HOLD},
        "hours": {"open_without_staff": True},
    }, accounts=make_accounts(work / "accounts", names))
    server.start()
    visitor_base = f"http://127.0.0.1:{server.visitor_port}"
    staff_base = f"http://127.0.0.1:{server.staff_port}"
    rss_before = server.rss_mb()
    run = Run(messages=args.messages)
    connector = aiohttp.TCPConnector(limit=0, limit_per_host=0, force_close=False)
    started = time.monotonic()
    deadline = started + args.limit
    arrivals: asyncio.Queue[int] = asyncio.Queue()
    try:
        logged_in: list[str] = []
        staff = [asyncio.create_task(counsellor(n, staff_base, connector, run, deadline + 600, arrivals, per,
                                                logged_in)) for n in names]
        login_began = time.monotonic()
        while len(logged_in) < len(names) and not any(t.done() for t in staff):
            await asyncio.sleep(0.2)  # visitors arrive once the shift has logged in
        logins = time.monotonic() - login_began
        started = time.monotonic()
        deadline = started + args.limit
        ramp = args.ramp / args.visitors
        visitors = [asyncio.create_task(visitor(i, visitor_base, connector, run, deadline, arrivals, i * ramp))
                    for i in range(args.visitors)]
        peak = rss_before
        while not all(t.done() for t in visitors):
            await asyncio.wait(visitors, timeout=5)
            peak = max(peak, server.rss_mb())
            print(f"  {time.monotonic() - started:5.0f} s: {run.visitors_done} visitors done, "
                  f"{run.requests} requests, {sum(run.errors.values())} errors, server {server.rss_mb():.0f} MB",
                  file=sys.stderr, flush=True)
        await asyncio.gather(*staff)
        took = time.monotonic() - started
        rss_after = server.rss_mb()
    finally:
        await connector.close()
        server.stop()
    trips = sorted(run.round_trips)
    print(f"load proof: {args.visitors} visitors, {args.counsellors} counsellors, {args.messages} messages each way "
          f"per chat, fd limit {limit}")
    print(f"  {len(names)} counsellor logins took {logins:.1f} s (one argon2id at a time)")
    print(f"  finished in {took:.1f} s after the logins, {run.requests} requests")
    print(f"  conversations delivered exactly once and in order: {run.delivered_ok} of {args.visitors}")
    print(f"  errors: {sum(run.errors.values())} {dict(run.errors)}")
    if trips:
        print(f"  round trip visitor -> counsellor -> visitor: median {statistics.median(trips) * 1000:.0f} ms, "
              f"p90 {trips[int(len(trips) * 0.9)] * 1000:.0f} ms, max {trips[-1] * 1000:.0f} ms ({len(trips)})")
    print(f"  server memory: {rss_before:.0f} MB before, {peak:.0f} MB peak, {rss_after:.0f} MB after the run")
    print(f"  server exit after SIGTERM: {server.returncode} in {server.stop_seconds:.1f} s; "
          f"log problems: {server.problems() or 'none'}")
    ok = run.delivered_ok == args.visitors and not run.errors and server.returncode == 0
    return 0 if ok else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--visitors", type=int, default=2000)
    parser.add_argument("--counsellors", type=int, default=50)
    parser.add_argument("--messages", type=int, default=5)
    parser.add_argument("--limit", type=float, default=600, help="seconds before the run is stopped")
    parser.add_argument("--ramp", type=float, default=60, help="seconds over which visitors arrive")
    sys.exit(asyncio.run(main(parser.parse_args())))
