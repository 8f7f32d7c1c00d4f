"""Abuse proof (issue 10): the attacks at full speed from 1, 10 and 100 circuits, while real visitors arrive.

Can every real visitor still start a chat and reach a counsellor's Accept, within 5 s?

Run: .venv/bin/python -m bench.abuse [--quick] [--attacks line,leave,memory,resume,sessions,slow]
                                     [--circuits 1,10,100] [--source DIR] [--out FILE]

Each scenario (one attack, one number of circuits) gets a fresh ``onionchat serve --local``
with the default settings, except ``server.proxy_protocol = "on"``: every connection starts
with the PROXY line tor writes for an onion service with ``HiddenServiceExportCircuitID``,
one circuit id per simulated circuit (a Tor Browser uses one circuit per site). The attackers
run in a process of their own (``--attack NAME``); the measuring process logs a counsellor in
and sends a real visitor every ``--every`` seconds, each on a circuit of their own: landing page,
Start chat, the messages frame showing their place in line, and the counsellor's Accept.
Figures per scenario: real visitors who got there, their times, the server's resident memory,
and the log lines written. With ``--source`` of a tree without circuit ids (before issue 10)
the clients send no PROXY line: the same attacks, against what that tree has.

The attacks (what the issue tried, each circuit in a loop as fast as the server answers):

- ``line``: fresh session, Start chat, "I am in danger now" on it, again;
- ``leave``: fresh session, Start chat, Leave chat, again;
- ``memory``: a chat per circuit, messages of 2,000 emoji (8 KB each in memory) as fast as
  allowed (messages_per_minute lifted, so minutes of attack take seconds), and the messages
  frame fetched in all 9 languages and every variant (paused, check, p=0/1);
- ``resume``: fresh session, a wrong passphrase, again (real visitors also resume their chat
  from a new session with the right passphrase);
- ``sessions``: page loads without a cookie, and resuming one chat from fresh sessions (real
  visitors read the start page for 2 s before pressing Start chat);
- ``slow``: 60 connections per circuit (tor's MaxStreams) each sending a POST head and then
  one byte every 5 s, reconnecting when cut off (after 0.5 s: a Tor stream's setup round trip);
  the server's hard limit on open files is 4,096 here, so that 100 circuits' 6,000 streams
  would exceed it.

A circuit the server closes is rebuilt after 1 s with a new id (an introduction, without the
proof-of-work tor would ask under load): the attack goes on from as many circuits throughout.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import secrets
import signal
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import proc
from bench.http import Connection, HttpError, Response
from bench.report import Row, table, verdict
from onionchat.web.server import raise_open_file_limit

ATTACKS = ("line", "leave", "memory", "resume", "sessions", "slow")
CIRCUIT_COUNTS = (1, 10, 100)
TARGET_SECONDS = 5.0
LOG_LINES_PER_MINUTE = 100
# The documented ceiling of the server's resident memory with the default settings (docs/abuse.md).
CEILING_MB = 700.0
SLOW_NOFILE = 4096
SAFETY_MB = 4000.0  # the attack is stopped when the server grows beyond this (a tree without a ceiling)
STREAMS_PER_CIRCUIT = 60  # tor's HiddenServiceMaxStreams (onionchat's default): a circuit opening more is closed
ATTACK_CIRCUIT_BASE = 10_000
REBUILD_SECONDS = 1.0  # a new circuit: an introduction (tor's PoW would add seconds under attack)
REFUSALS_BEFORE_REBUILD = 3
STREAM_SETUP_SECONDS = 0.5  # a Tor stream's setup round trip (real onion circuits: 0.5-2 s)
REAL_CIRCUIT_BASE = 900_000
STAFF_CIRCUIT = 999_999
READING_SECONDS = 2.0
COUNSELLOR = "c000"  # the account that accepts the real visitors (bench/__main__ makes it too)
LANGUAGES = ("en", "nl", "ro", "bg", "pl", "hu", "uk", "es", "ar")
_WORDS = re.compile(rb'class="words">([^<]+)<')
_TITLE = re.compile(rb"<h1[^>]*>([^<]+)</h1>")
_QUEUE_ROW = re.compile(rb'action="/accept/([^"]+)".*?<span class="who">([^<]*)</span>', re.DOTALL)


def proxy_line(circuit: int) -> bytes:
    """The line tor writes first on each connection of ``circuit`` (tor 0.4.9.11's format)."""
    high, low = circuit >> 16, circuit & 0xFFFF
    return f"PROXY TCP6 fc00:dead:beef:4dad::{high:x}:{low:x} ::1 {low} 80\r\n".encode()


def multipart(fields: dict[str, str]) -> tuple[str, bytes]:
    """A multipart/form-data body: raw UTF-8, so 2,000 emoji fit in [limits] body_bytes."""
    boundary = "----bench" + secrets.token_hex(8)
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
             for name, value in fields.items()]
    return f"multipart/form-data; boundary={boundary}", ("".join(parts) + f"--{boundary}--\r\n").encode()


# -- the attackers' process -------------------------------------------------------------------


@dataclass
class Tally:
    """What the attackers sent and got (printed as JSON when they stop)."""

    statuses: Counter[str] = field(default_factory=Counter)

    def count(self, response: Response | None) -> Response | None:
        """Count an answer's status (None: the connection was cut)."""
        self.statuses[str(response.status) if response is not None else "cut"] += 1
        return response


class CircuitIds:
    """Fresh circuit ids for the attackers (tor numbers its circuits; a new one gets the next)."""

    def __init__(self, first: int) -> None:
        self.next = first

    def new(self) -> int:
        """The id of a circuit just built."""
        self.next += 1
        return self.next - 1


class Attacker:
    """One simulated circuit running one attack in a loop until ``stop``.

    When the server has closed the circuit (its connections end at once, new ones are
    refused), the attacker builds a new one, as a real one would: after REBUILD_SECONDS
    (an introduction; tor's proof-of-work would add to it under load), with a new id and so
    fresh budgets. The attack thus goes on from ``circuits`` circuits at any moment.
    """

    def __init__(self, port: int, ids: CircuitIds, proxy: bool, tally: Tally, stop: asyncio.Event) -> None:
        self.port = port
        self.ids = ids
        self.proxy = proxy
        self.prefix = proxy_line(ids.new()) if proxy else b""
        self.conn = Connection(port, self.prefix)
        self.tally = tally
        self.stop = stop
        self.refused = 0  # connections in a row closed before any answer
        self.rebuilding: asyncio.Event | None = None  # set when the new circuit is there

    async def refused_once(self, before_rebuild: int = REFUSALS_BEFORE_REBUILD) -> None:
        """A connection ended without an answer; after ``before_rebuild`` in a row, build a new circuit.

        Meanwhile this circuit's other streams wait for the new one, as they would in a tor
        client (a stream cannot go out on a closed circuit).
        """
        self.refused += 1
        if self.rebuilding is not None:
            await self.rebuilding.wait()
            return
        if self.refused < before_rebuild or not self.proxy:
            await asyncio.sleep(0)
            return
        self.rebuilding = asyncio.Event()
        try:
            await asyncio.sleep(REBUILD_SECONDS)
            self.prefix = proxy_line(self.ids.new())
            self.tally.statuses["new circuits"] += 1
            self.refused = 0
        finally:
            self.rebuilding.set()
            self.rebuilding = None

    async def ask(self, method: str, path: str, **kwargs: Any) -> Response | None:
        """One request; None (counted as "cut") when the server closed the connection."""
        try:
            answer = await self.conn.request(method, path, timeout=30, **kwargs)
        except (HttpError, OSError, TimeoutError):
            self.tally.count(None)
            self.conn = Connection(self.port, self.prefix)
            await self.refused_once()
            self.conn = Connection(self.port, self.prefix)
            return None
        self.refused = 0
        return self.tally.count(answer)

    async def fresh_session(self) -> tuple[str, str] | None:
        """A first visit: the new session's cookie and CSRF token, or None if refused."""
        landing = await self.ask("GET", "/")
        if landing is None or landing.status != 200 or "oc_visitor" not in landing.cookies:
            return None
        return f"oc_visitor={landing.cookies['oc_visitor']}", landing.csrf()

    async def start_chat(self) -> str | None:
        """A new chat; its session cookie, or None if refused."""
        session = await self.fresh_session()
        if session is None:
            return None
        started = await self.ask("POST", "/start", cookie=session[0], form={"_csrf": session[1], "nickname": "x"})
        if started is None or started.status != 303:
            return None
        return f"oc_visitor={started.cookies['oc_visitor']}" if "oc_visitor" in started.cookies else session[0]

    async def csrf_of(self, path: str, cookie: str) -> str | None:
        """The CSRF token of the page at ``path``, or None."""
        page = await self.ask("GET", path, cookie=cookie)
        try:
            return page.csrf() if page is not None and page.status == 200 else None
        except HttpError:
            return None

    async def run(self, attack: str, shared: dict[str, str]) -> None:
        """Repeat one round of ``attack`` until stopped."""
        step: dict[str, Callable[[dict[str, str]], Awaitable[None]]] = {
            "line": self.line, "leave": self.leave, "memory": self.memory, "resume": self.resume,
            "sessions": self.sessions}
        while not self.stop.is_set():
            await step[attack](shared)

    async def line(self, shared: dict[str, str]) -> None:
        """Fill the line: a fake chat, marked 'in danger'."""
        await self.start_then("/chat/urgent")

    async def leave(self, shared: dict[str, str]) -> None:
        """Start a chat and leave it at once."""
        await self.start_then("/chat/leave")

    async def start_then(self, path: str) -> None:
        """Start a fake chat, then press the chat page's button that posts to ``path``."""
        cookie = await self.start_chat()
        if cookie is None:
            return
        token = await self.csrf_of("/chat", cookie)
        if token is not None:
            await self.ask("POST", path, cookie=cookie, form={"_csrf": token})

    async def memory(self, shared: dict[str, str]) -> None:
        """One chat stuffed with long messages, its frame fetched in every language and variant."""
        cookie = await self.start_chat()
        if cookie is None:
            return
        token = await self.csrf_of("/chat/compose", cookie)
        if token is None:
            return
        text = "\U0001f642" * 2000  # outside the BMP: Python keeps the whole message at 4 bytes a character
        full = False
        n = 0
        while not self.stop.is_set():
            n += 1
            if not full:
                body = multipart({"_csrf": token, "text": text})
                sent = await self.ask("POST", "/chat/send", cookie=cookie, raw=body)
                full = sent is not None and sent.status == 413  # the chat (or its share of memory) is full
            if full or n % 25 == 0:  # every variant of the frame, in every language
                for lang in LANGUAGES:
                    await self.ask("GET", f"/lang/{lang}?next=/chat", cookie=cookie)
                    for query in ("", "?paused=1&n=0", "?paused=1&n=1", "?v=0&p=0", "?v=0&p=1"):
                        if self.stop.is_set():
                            return
                        await self.ask("GET", f"/chat/messages{query}", cookie=cookie)

    async def resume(self, shared: dict[str, str]) -> None:
        """A wrong passphrase from a fresh session."""
        session = await self.fresh_session()
        if session is not None:
            await self.ask("POST", "/resume", cookie=session[0],
                           form={"_csrf": session[1], "passphrase": secrets.token_hex(8)})

    async def sessions(self, shared: dict[str, str]) -> None:
        """Fill the session table: page loads without a cookie, and one chat resumed from fresh sessions."""
        await self.ask("GET", "/")  # no cookie: a new session each time
        session = await self.fresh_session()
        if session is not None and shared.get("passphrase"):
            await self.ask("POST", "/resume", cookie=session[0],
                           form={"_csrf": session[1], "passphrase": shared["passphrase"]})

    async def slow(self) -> None:
        """STREAMS_PER_CIRCUIT connections each dribbling a POST body, reopened when cut off."""
        async def one() -> None:
            head = (b"POST /start HTTP/1.1\r\nHost: onion\r\nContent-Type: application/x-www-form-urlencoded\r\n"
                    b"Content-Length: 16000\r\n\r\n_csrf=")
            while not self.stop.is_set():
                # Opening a stream over Tor is a round trip on the circuit (RELAY_BEGIN, then
                # CONNECTED): on loopback a refused stream could be retried a thousand times a
                # second, which no Tor client can.
                await asyncio.sleep(STREAM_SETUP_SECONDS)
                try:
                    reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
                except OSError:
                    self.tally.count(None)
                    await asyncio.sleep(0.1)
                    continue
                self.tally.statuses["opened"] += 1
                opened = time.monotonic()
                try:
                    writer.write(self.prefix + head)
                    while not self.stop.is_set() and not reader.at_eof():
                        await writer.drain()
                        with contextlib.suppress(TimeoutError):
                            async with asyncio.timeout(5):
                                if await reader.read(1000) == b"":
                                    break
                        writer.write(b"a")
                except OSError:
                    pass
                finally:
                    writer.close()
                self.tally.statuses["cut"] += 1
                if time.monotonic() - opened < 1.0:  # refused: the circuit is closed, or over its budget
                    await self.refused_once(1)

        await asyncio.gather(*(one() for _ in range(STREAMS_PER_CIRCUIT)))


async def attack_process(args: argparse.Namespace) -> None:
    """The attackers' side: run ``args.attack`` from ``args.circuits`` circuits until SIGTERM."""
    raise_open_file_limit(20_000)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    tally = Tally()
    shared: dict[str, str] = {}
    ids = CircuitIds(ATTACK_CIRCUIT_BASE)
    if args.attack == "sessions":  # one chat whose passphrase every fresh session then resumes
        setup = Attacker(args.port, CircuitIds(ATTACK_CIRCUIT_BASE - 1), args.proxy, Tally(), stop)
        cookie = await setup.start_chat()
        page = await setup.ask("GET", "/chat", cookie=cookie or "")
        found = _WORDS.search(page.body) if page is not None else None
        shared["passphrase"] = found.group(1).decode() if found else ""
    attackers = [Attacker(args.port, ids, args.proxy, tally, stop) for _ in range(args.circuits)]
    print("ready", flush=True)
    if args.attack == "slow":
        tasks = [asyncio.ensure_future(a.slow()) for a in attackers]
    else:
        tasks = [asyncio.ensure_future(a.run(args.attack, shared)) for a in attackers]
    await stop.wait()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    print(json.dumps(dict(tally.statuses)), flush=True)


# -- the measuring process --------------------------------------------------------------------


@dataclass
class Visit:
    """One real visitor's outcome."""

    ok: bool
    seconds: float
    failure: str = ""


class Desk:
    """The counsellor: logged in on a circuit of their own, accepting real visitors by nickname."""

    def __init__(self, port: int, proxy: bool) -> None:
        self.conn = Connection(port, proxy_line(STAFF_CIRCUIT) if proxy else b"")
        self.cookie = ""
        self.csrf = ""
        self.lock = asyncio.Lock()

    async def login(self, name: str) -> None:
        """Log in as ``name`` (argon2id at production cost)."""
        form = await self.conn.request("GET", "/login")
        cookie = f"oc_staff={form.cookies['oc_staff']}"
        answer = await self.conn.request("POST", "/login", cookie=cookie, timeout=120,
                                         form={"_csrf": form.csrf(), "username": name, "password": proc.PASSWORD})
        if answer.status != 303:
            raise HttpError(f"counsellor login: {answer.status}")
        self.cookie = f"oc_staff={answer.cookies['oc_staff']}"
        self.csrf = (await self.conn.request("GET", "/", cookie=self.cookie)).csrf()

    async def accept(self, nickname: str) -> str:
        """Find ``nickname`` in the board's waiting line and press its Accept; "" or why not.

        The board paused lists the whole line (running, it shows the first rows only).
        """
        async with self.lock:
            board = await self.conn.request("GET", "/board?paused=1", cookie=self.cookie, timeout=30)
            rows = {}
            for row in board.body.split(b"<li")[1:]:  # one waiting visitor per list item
                found = _QUEUE_ROW.search(row)
                if found:
                    rows[found.group(2).decode()] = found.group(1).decode()
            if nickname not in rows:
                return "not listed"
            answer = await self.conn.request("POST", f"/accept/{rows[nickname]}", cookie=self.cookie,
                                             form={"_csrf": self.csrf}, timeout=30)
            if answer.status == 303:
                return ""
            title = _TITLE.search(answer.body)
            return f"{answer.status} {title.group(1).decode() if title else ''}".strip()


async def real_visitor(port: int, circuit: int, proxy: bool, desk: Desk, attack: str) -> Visit:
    """A real visitor's way to a counsellor: landing, Start chat, place in line, the counsellor's Accept."""
    conn = Connection(port, proxy_line(circuit) if proxy else b"")
    nickname = f"real{circuit}"
    began = time.monotonic()
    paused = 0.0
    try:
        async with asyncio.timeout(60):
            landing = await conn.request("GET", "/")
            if landing.status != 200 or "oc_visitor" not in landing.cookies:
                return Visit(False, time.monotonic() - began, f"landing {landing.status}")
            cookie = f"oc_visitor={landing.cookies['oc_visitor']}"
            if attack == "sessions":  # reading the start page before pressing Start chat
                await asyncio.sleep(READING_SECONDS)
                paused = READING_SECONDS
            started = await conn.request("POST", "/start", cookie=cookie,
                                         form={"_csrf": landing.csrf(), "nickname": nickname})
            if started.status != 303:
                return Visit(False, time.monotonic() - began - paused, f"start {started.status}")
            cookie = f"oc_visitor={started.cookies['oc_visitor']}" if "oc_visitor" in started.cookies else cookie
            frame = await conn.request("GET", "/chat/messages", cookie=cookie)
            if frame.status != 200 or b"in line" not in frame.body:
                return Visit(False, time.monotonic() - began - paused, f"frame {frame.status}")
            if attack == "resume":  # back from another browser session with the passphrase
                page = await conn.request("GET", "/chat", cookie=cookie)
                words = _WORDS.search(page.body)
                again = Connection(port, proxy_line(circuit + 50_000) if proxy else b"")
                other = await again.request("GET", "/")
                resumed = await again.request("POST", "/resume", cookie=f"oc_visitor={other.cookies['oc_visitor']}",
                                              form={"_csrf": other.csrf(),
                                                    "passphrase": words.group(1).decode() if words else ""})
                again.close()
                if resumed.status != 303:
                    return Visit(False, time.monotonic() - began, f"resume {resumed.status}")
            refused = await desk.accept(nickname)
            if refused:
                return Visit(False, time.monotonic() - began - paused, f"accept: {refused}")
            return Visit(True, time.monotonic() - began - paused)
    except (HttpError, OSError, TimeoutError, KeyError) as exc:
        return Visit(False, time.monotonic() - began - paused, type(exc).__name__)
    finally:
        conn.close()


def settings(attack: str, proxy: bool) -> dict[str, dict[str, Any]]:
    """The scenario's config: defaults, plus what lets a bench run it in seconds."""
    sections: dict[str, dict[str, Any]] = {"server": {"log_level": "INFO"}, "staff": {"max_chats": 50}}
    if proxy:
        sections["server"]["proxy_protocol"] = "on"
    if attack == "memory":
        sections["limits"] = {"messages_per_minute": 10_000}  # the most a config may say
    return sections


class _Stopper:
    """Stops a started server when closed (contextlib.closing)."""

    def __init__(self, server: proc.Server) -> None:
        self.server = server

    def close(self) -> None:
        self.server.stop()


def log_lines(server: proc.Server) -> int:
    """Lines the server has written to its log so far."""
    return len((server.dir / "server.log").read_text(errors="replace").splitlines())


async def scenario(work: Path, accounts: Path, attack: str, circuits: int, seconds: float, every: float,
                   proxy: bool) -> tuple[list[Visit], Visit, dict[str, float], dict[str, int]]:
    """Run one attack from ``circuits`` circuits for ``seconds`` with real visitors every ``every`` seconds."""
    for attempt in range(3):  # a port found free can be taken by another process before the server binds it
        server = proc.Server(work, f"{attack}-{circuits}-{attempt}", settings(attack, proxy), accounts, budgets=True,
                             nofile=SLOW_NOFILE if attack == "slow" else None)
        try:
            server.start()
            break
        except RuntimeError as exc:
            server.stop()
            if "address already in use" not in str(exc) or attempt == 2:
                raise
    with contextlib.closing(_Stopper(server)):
        desk = Desk(server.staff_port, proxy)
        await desk.login(COUNSELLOR)
        figures = {"rss_start": server.rss_mb(), "rss_max": server.rss_mb(), "files_max": 0.0}
        lines_before = log_lines(server)
        attackers = subprocess.Popen(  # noqa: S603 - this module, fixed arguments
            [sys.executable, "-m", "bench.abuse", "--attack", attack, "--port", str(server.visitor_port),
             "--circuits", str(circuits), *(["--proxy"] if proxy else [])],
            stdout=subprocess.PIPE, cwd=Path(__file__).resolve().parent.parent)
        assert attackers.stdout is not None
        await asyncio.to_thread(attackers.stdout.readline)  # "ready"
        began = time.monotonic()

        async def sample() -> None:
            while True:
                with contextlib.suppress(OSError):
                    figures["rss_max"] = max(figures["rss_max"], server.rss_mb())
                    figures["files_max"] = max(figures["files_max"], len(os.listdir(f"/proc/{server.pid}/fd")))
                if figures["rss_max"] > SAFETY_MB and attackers.poll() is None:
                    figures["stopped_at_safety"] = 1  # this machine is shared: stop before it runs out
                    attackers.send_signal(signal.SIGTERM)
                await asyncio.sleep(0.25)

        sampler = asyncio.ensure_future(sample())
        visits: list[asyncio.Future[Visit]] = []
        n = 0
        await asyncio.sleep(min(2.0, seconds / 4))  # the attack is under way before the first visitor
        while time.monotonic() - began < seconds:
            visits.append(asyncio.ensure_future(
                real_visitor(server.visitor_port, REAL_CIRCUIT_BASE + n, proxy, desk, attack)))
            n += 1
            await asyncio.sleep(every)
        during = [await v for v in visits]
        attack_seconds = time.monotonic() - began
        attackers.send_signal(signal.SIGTERM)
        tally_line = await asyncio.to_thread(attackers.stdout.readline)
        await asyncio.to_thread(attackers.wait, 30)
        attackers.stdout.close()
        after = await real_visitor(server.visitor_port, REAL_CIRCUIT_BASE + n, proxy, desk, attack)
        sampler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampler
        written = log_lines(server) - lines_before
        figures["log_per_minute"] = written * 60 / max(attack_seconds, 1.0)
        figures["log_lines"] = written
        figures["seconds"] = attack_seconds
        try:
            tally = {k: int(v) for k, v in json.loads(tally_line or b"{}").items()}
        except ValueError:
            tally = {}
    problems = server.problems()
    figures["problems"] = len(problems)
    if problems:
        tally["problem: " + problems[0][:160] + "; log ends: " + server.log_tail(2)[-200:]] = 1
    return during, after, figures, tally


def rows_of(attack: str, circuits: int, during: list[Visit], after: Visit, figures: dict[str, float],
            tally: dict[str, int]) -> list[Row]:
    """The table rows of one scenario."""
    name = f"{attack} x{circuits}"
    reached = [v for v in during if v.ok and v.seconds <= TARGET_SECONDS]
    times = sorted(v.seconds for v in during if v.ok)
    failures = Counter(v.failure or "slower than 5 s" for v in during if not (v.ok and v.seconds <= TARGET_SECONDS))
    sent = sum(v for k, v in tally.items() if k != "opened")
    statuses = ", ".join(f"{k}: {v:,}" for k, v in sorted(tally.items(), key=lambda kv: -kv[1])[:4]
                         if not k.startswith("problem: "))
    return [
        Row(name, "real visitors at Accept", f"{len(reached)}/{len(during)}", f"all, each <= {TARGET_SECONDS:.0f} s",
            verdict=verdict(len(reached) == len(during) and bool(during))),
        Row(name, "their time p50 / max",
            f"{statistics.median(times):.2f} s / {times[-1]:.2f} s" if times else "n/a",
            "; ".join(f"{k} x{v}" for k, v in failures.items())),
        Row(name, "after the attack", "reached" if after.ok and after.seconds <= TARGET_SECONDS else
            f"NOT reached ({after.failure or f'{after.seconds:.1f} s'})", ""),
        Row(name, "server memory start / max", f"{figures['rss_start']:.0f} / {figures['rss_max']:.0f} MB"
            + (" (attack stopped: safety limit)" if figures.get("stopped_at_safety") else ""),
            f"<= {CEILING_MB:.0f} MB", verdict=verdict(figures["rss_max"] <= CEILING_MB)),
        Row(name, "server open files, max", f"{figures['files_max']:,.0f}",
            f"hard limit {SLOW_NOFILE:,}" if attack == "slow" else ""),
        Row(name, "log lines (per minute)", f"{figures['log_lines']:.0f} ({figures['log_per_minute']:.0f}/min)",
            f"< {LOG_LINES_PER_MINUTE}/min", verdict=verdict(figures["log_per_minute"] < LOG_LINES_PER_MINUTE)),
        Row(name, "attack requests", f"{sent:,} in {figures['seconds']:.0f} s", statuses),
    ]


async def run_all(work: Path, accounts: Path, attacks: list[str], counts: list[int], seconds: float, every: float,
                  notes: list[str]) -> list[Row]:
    """Every chosen scenario, one after the other; their rows (failures and machine load go to ``notes``)."""
    raise_open_file_limit(20_000)
    proxy = proc.has_module("onionchat.web.proxy")
    notes.append(f"abuse: {'circuit ids (PROXY lines)' if proxy else 'no circuit ids: this tree predates them'}; "
                 f"{seconds:.0f} s of attack per scenario, a real visitor every {every:.1f} s; attackers, "
                 "measuring client and server share the machine's cores")
    rows: list[Row] = []
    for attack in attacks:
        for circuits in counts:
            print(f"abuse: {attack} from {circuits} circuit(s) ...", file=sys.stderr, flush=True)
            busy0, own0, t0 = proc.busy_seconds(), proc.own_seconds(), time.monotonic()
            try:
                during, after, figures, tally = await scenario(work, accounts, attack, circuits, seconds, every, proxy)
            except Exception as exc:  # noqa: BLE001 - one failed scenario must not hide the others
                notes.append(f"abuse {attack} x{circuits} FAILED: {type(exc).__name__}: {exc}")
                continue
            rows += rows_of(attack, circuits, during, after, figures, tally)
            other = (proc.busy_seconds() - busy0) - (proc.own_seconds() - own0)
            share = 100 * max(0.0, other) / (time.monotonic() - t0)
            problem = next((k.removeprefix("problem: ") for k in tally if k.startswith("problem: ")), "")
            notes.append(f"abuse {attack} x{circuits}: other processes used {share:.0f} % of a core meanwhile; "
                         f"server log problems: {figures['problems']:.0f}" + (f" ({problem})" if problem else ""))
    return rows


async def measure(args: argparse.Namespace) -> int:
    """Run every chosen scenario; print the table."""
    notes: list[str] = []
    with proc.workdir() as work:
        accounts = proc.make_accounts(work / "accounts", [COUNSELLOR])
        rows = await run_all(work, accounts, [a for a in args.attacks.split(",") if a],
                             [int(c) for c in args.circuits.split(",") if c], args.seconds, args.every, notes)
    text = table(rows, proc.machine(), notes)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 1 if any(r.verdict == "MISS" for r in rows) or any("FAILED" in n for n in notes) else 0


def parser() -> argparse.ArgumentParser:
    """The command line of ``python -m bench.abuse``."""
    p = argparse.ArgumentParser(prog="python -m bench.abuse", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--attacks", default=",".join(ATTACKS))
    p.add_argument("--circuits", default=",".join(str(c) for c in CIRCUIT_COUNTS))
    p.add_argument("--seconds", type=float, default=20.0, help="attack time per scenario")
    p.add_argument("--every", type=float, default=1.0, help="seconds between two real visitors")
    p.add_argument("--quick", action="store_true", help="8 s per scenario: a smoke test, not figures to quote")
    p.add_argument("--source", metavar="DIR", help="run onionchat from this source tree (e.g. the tree before)")
    p.add_argument("--out", metavar="FILE", help="also write the table to FILE")
    p.add_argument("--attack", help=argparse.SUPPRESS)  # the attackers' process
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    p.add_argument("--proxy", action="store_true", help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    args = parser().parse_args(argv)
    if args.attack:
        args.circuits = int(args.circuits)
        asyncio.run(attack_process(args))
        return 0
    if args.quick:
        args.seconds = 8.0
    if args.source:
        source = str(Path(args.source).resolve())
        os.environ["PYTHONPATH"] = source  # the servers run that tree
    return asyncio.run(measure(args))


if __name__ == "__main__":
    sys.exit(main())
