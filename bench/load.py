"""Benchmarks 2-4: visitors hold their messages frame open while counsellors send; delivery latency."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import random
import resource
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from bench.flows import Counsellor, Visitor
from bench.http import Connection, HttpError
from bench.proc import Server, has_module, running
from bench.profile import Profiler
from bench.report import Row, ms, percentile, verdict

T = TypeVar("T")
MAX_CHATS = 50  # the config's upper bound: fewer counsellors (each login costs 0.2 s of argon2id)
HOLD_SECONDS = 20  # the default hold: most polls in a run are answered by a change, not a timeout
DRAIN_SECONDS = 5.0  # after the last send, how long a message may still take before it counts as lost


def limits(conversations: int) -> dict[str, dict[str, Any]]:
    """Config settings that let one process hold ``conversations`` chats and their sessions."""
    staff: dict[str, Any] = {"max_chats": MAX_CHATS, "login_attempts": 1000}
    if has_module("onionchat.turns"):  # issue 11's budgets: a login wave comes from one circuit
        staff |= {"login_attempts_per_account": 1000, "login_attempts_per_circuit": 10_000}
    return {
        # Set-up leaves the visitors' connections idle for minutes before their frames start
        # polling (a browser's frame polls at once); the idle limit must not cut them meanwhile.
        "limits": {"conversations": conversations + 100, "queue_length": conversations + 100,
                   "sessions": conversations * 2 + 100, "messages_per_minute": 10_000,
                   "connection_idle_seconds": 3600},
        "staff": staff,
        "poll": {"mode": "hold", "hold_seconds": HOLD_SECONDS},
        # The bench's counsellors answer over plain HTTP and keep no staff page open: they would
        # not count as available, and visitors would be asked to come back later.
        "hours": {"open_without_staff": True},
    }


def counsellor_names(count: int) -> list[str]:
    """Names of the counsellors that hold the benchmark's chats."""
    return [f"c{i:03d}" for i in range(count)]


def login_names(count: int) -> list[str]:
    """Names of the accounts that only log in (benchmark 4)."""
    return [f"login{i:02d}" for i in range(count)]


async def bounded(items: list[T], limit: int, work: Callable[[T], Awaitable[None]]) -> None:
    """Run ``work`` on every item, at most ``limit`` at once (the listen backlog is 128)."""
    gate = asyncio.Semaphore(limit)

    async def one(item: T) -> None:
        async with gate:
            await work(item)

    await asyncio.gather(*(one(item) for item in items))


@dataclass(slots=True)
class Population:
    """Open conversations: each visitor with its connection, each accepted by a counsellor."""

    visitors: list[Visitor]
    counsellors: list[Counsellor]
    owner: dict[int, Counsellor]
    setup_seconds: float


async def populate(server: Server, conversations: int) -> Population:
    """Log the counsellors in, start ``conversations`` chats and have them accepted."""
    loop = asyncio.get_running_loop()
    began = loop.time()
    count = math.ceil(conversations / MAX_CHATS)
    counsellors = [Counsellor(name, await Connection.open(server.staff_port)) for name in counsellor_names(count)]
    # The server hashes one login at a time; asking all at once only queues them there.
    await asyncio.gather(*(c.login(timeout=30 + count * 1.0) for c in counsellors))
    visitors: list[Visitor] = []
    owner: dict[int, Counsellor] = {}

    async def fill(counsellor: Counsellor) -> None:
        wanted = min(MAX_CHATS, conversations - len(visitors))
        mine = [Visitor(len(visitors) + i, await Connection.open(server.visitor_port)) for i in range(wanted)]
        visitors.extend(mine)
        await bounded(mine, 32, lambda v: v.start())
        await counsellor.accept(mine)
        for visitor in mine:
            owner[visitor.index] = counsellor

    # One counsellor at a time keeps the queue (rendered in every board) at 50 rows.
    for counsellor in counsellors:
        await fill(counsellor)
    return Population(visitors, counsellors, owner, loop.time() - began)


@dataclass(slots=True)
class Delivery:
    """What the visitors saw: latencies (POST answered -> frame returned) and failures."""

    samples: list[tuple[float, float]] = field(default_factory=list)  # (POST answered at, latency)
    early: int = 0  # frame answer read before the POST's own answer (latency counted as 0)
    errors: list[str] = field(default_factory=list)
    first_answers: int = 0
    sent: int = 0
    send_errors: int = 0

    def latencies(self, since: float = -math.inf, until: float = math.inf) -> list[float]:
        """Latencies of messages whose POST was answered in [since, until)."""
        return [lat for at, lat in self.samples if since <= at < until]


async def poll(visitor: Visitor, delivery: Delivery, stop_at: float) -> None:
    """Follow the messages frame's Refresh chain like a browser, until ``stop_at``."""
    loop = asyncio.get_running_loop()
    url = "/chat/messages"
    first = True
    while loop.time() < stop_at:
        try:
            answer = await visitor.frame(url, timeout=HOLD_SECONDS + 15)
        except (HttpError, TimeoutError) as exc:
            delivery.errors.append(f"{visitor.nickname}: {type(exc).__name__} {exc}")
            return
        now = loop.time()
        if first:
            delivery.first_answers += 1
            first = False
        for token, answered in list(visitor.pending.items()):
            if token in answer.body:
                del visitor.pending[token]
                if answered is None:
                    visitor.seen_early[token] = now
                else:
                    delivery.samples.append((answered, now - answered))
        url = answer.refresh_url()


async def send_one(counsellor: Counsellor, visitor: Visitor, token: bytes, delivery: Delivery) -> None:
    """One counsellor message; the token lets the visitor's frame recognise it."""
    visitor.pending[token] = None
    try:
        await counsellor.send(visitor, token.decode())
    except (HttpError, TimeoutError):
        delivery.send_errors += 1
        visitor.pending.pop(token, None)
        return
    now = asyncio.get_running_loop().time()
    delivery.sent += 1
    seen = visitor.seen_early.pop(token, None)
    if seen is not None:
        delivery.early += 1
        delivery.samples.append((now, 0.0))
    elif token in visitor.pending:
        visitor.pending[token] = now


async def send_at_rate(population: Population, rate: float, seconds: float, delivery: Delivery,
                       seed: int = 7) -> None:
    """Counsellors send ``rate`` messages per second in total, to conversations in random order."""
    loop = asyncio.get_running_loop()
    order = list(population.visitors)
    random.Random(seed).shuffle(order)  # noqa: S311 - a repeatable order, not a secret
    total = int(rate * seconds)
    tasks: set[asyncio.Task[None]] = set()
    began = loop.time()
    counter = itertools.count()
    for k, visitor in zip(range(total), itertools.cycle(order), strict=False):
        delay = began + k / rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        token = f"bm{next(counter)}z{visitor.index}".encode()
        task = asyncio.create_task(send_one(population.owner[visitor.index], visitor, token, delivery))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.wait(tasks, timeout=DRAIN_SECONDS * 2)


async def drain(population: Population, seconds: float = DRAIN_SECONDS) -> int:
    """Wait (bounded) for messages still on their way; returns how many never arrived."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while loop.time() < deadline:
        if not any(v.pending for v in population.visitors):
            return 0
        await asyncio.sleep(0.05)
    return sum(len(v.pending) for v in population.visitors)


async def until(condition: Callable[[], bool], seconds: float) -> bool:
    """Wait (bounded) for ``condition``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while loop.time() < deadline:
        if condition():
            return True
        await asyncio.sleep(0.05)
    return condition()


def client_cpu() -> float:
    """CPU seconds this (client) process has used."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass(slots=True)
class Phase:
    """CPU use of server and client over a stretch of the run."""

    server: Server
    wall: float = 0.0
    server_cpu: float = 0.0
    client_cpu: float = 0.0
    _t: float = 0.0
    _s: float = 0.0
    _c: float = 0.0
    _profiler: Profiler | None = None

    def __enter__(self) -> Phase:
        self._profiler = Profiler(self.server.pid, self.server.dir.name).__enter__()
        self._t = asyncio.get_running_loop().time()
        self._s = self.server.cpu_seconds()
        self._c = client_cpu()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = asyncio.get_running_loop().time() - self._t
        self.server_cpu = self.server.cpu_seconds() - self._s
        self.client_cpu = client_cpu() - self._c
        if self._profiler is not None:
            self._profiler.__exit__()

    def describe(self) -> str:
        """Average CPU use of both processes (100 % = one core)."""
        if self.wall <= 0:
            return ""
        return (f"server {100 * self.server_cpu / self.wall:.0f} % CPU, "
                f"client {100 * self.client_cpu / self.wall:.0f} % CPU")


class Run:
    """One server with a population of held polls; pollers stop at the end, connections close."""

    def __init__(self, server: Server, conversations: int) -> None:
        self.server = server
        self.conversations = conversations
        self.delivery = Delivery()
        self.tasks: list[asyncio.Task[None]] = []
        self.population: Population | None = None

    async def __aenter__(self) -> Run:
        self.population = await populate(self.server, self.conversations)
        loop = asyncio.get_running_loop()
        stop_at = loop.time() + 600  # every poller is cancelled at exit; this only bounds a stray one
        self.tasks = [asyncio.create_task(poll(v, self.delivery, stop_at)) for v in self.population.visitors]
        ready = await until(lambda: self.delivery.first_answers >= len(self.tasks), 60)
        if not ready:
            raise RuntimeError(f"only {self.delivery.first_answers} of {len(self.tasks)} frames answered")
        await asyncio.sleep(1.0)  # the next (held) requests reach the server
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in self.tasks:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*self.tasks, return_exceptions=True)
        assert self.population is not None
        for visitor in self.population.visitors:
            visitor.conn.close()
        for counsellor in self.population.counsellors:
            counsellor.conn.close()
        await asyncio.sleep(0.2)

    @property
    def pop(self) -> Population:
        """The population (after entering)."""
        assert self.population is not None
        return self.population


def delivery_rows(bench: str, label: str, latencies: list[float], lost: int, p50_target: float | None,
                  p99_target: float | None) -> list[Row]:
    """p50 / p99 / max rows of one set of latencies."""
    p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
    rows = []
    if p50_target is not None:
        rows.append(Row(bench, f"{label} p50", ms(p50), f"<= {ms(p50_target)}", "", verdict(p50 <= p50_target)))
    else:
        rows.append(Row(bench, f"{label} p50", ms(p50)))
    if p99_target is not None:
        rows.append(Row(bench, f"{label} p99", ms(p99), f"<= {ms(p99_target)}", "",
                        verdict(p99 <= p99_target and lost == 0)))
    else:
        rows.append(Row(bench, f"{label} p99", ms(p99)))
    rows.append(Row(bench, f"{label} max", ms(max(latencies, default=math.nan)),
                    f"{len(latencies)} messages, {lost} lost"))
    return rows


async def _delivery(server: Server, conversations: int, rate: float, seconds: float,
                    notes: list[str]) -> list[Row]:
    bench = f"2 delivery {conversations:,}"
    async with Run(server, conversations) as run:
        with Phase(server) as phase:
            await send_at_rate(run.pop, rate, seconds, run.delivery)
            lost = await drain(run.pop)
        d = run.delivery
    p50_target, p99_target = (0.050, 0.250) if conversations >= 1000 else (None, None)
    rows = delivery_rows(bench, "delivery", d.latencies(), lost, p50_target, p99_target)
    rows.append(Row(bench, "load", f"{rate:g} msg/s for {seconds:g} s", phase.describe()))
    notes.extend(f"{bench}: {e}" for e in d.errors[:3])
    if d.send_errors:
        notes.append(f"{bench}: {d.send_errors} counsellor sends failed")
    return rows


def delivery(work: Path, accounts: Path, conversations: int, rate: float, seconds: float,
             notes: list[str]) -> list[Row]:
    """Benchmark 2: counsellor POST answered -> the visitor's held frame returns the message."""
    server = Server(work, f"delivery{conversations}", limits(conversations), accounts)
    with running(server):
        rows = asyncio.run(_delivery(server, conversations, rate, seconds, notes))
    notes.extend(f"2 delivery {conversations:,}: {p}" for p in server.problems())
    return rows


async def _capacity(server: Server, conversations: int, rate: float, seconds: float,
                    notes: list[str]) -> list[Row]:
    bench = f"3 capacity {conversations:,}"
    rss_idle = server.rss_mb()
    async with Run(server, conversations) as run:
        rss_held = server.rss_mb()
        with Phase(server) as phase:
            await send_at_rate(run.pop, rate, seconds, run.delivery)
            lost = await drain(run.pop)
        rss_after = server.rss_mb()
        d = run.delivery
        setup = run.pop.setup_seconds
    rss = max(rss_held, rss_after)
    rows = [Row(bench, "resident memory", f"{rss:.0f} MB", "<= 300 MB", "", verdict(rss <= 300)),
            Row(bench, "memory per held chat", f"{(rss - rss_idle) * 1024 / conversations:.1f} KB",
                f"idle server {rss_idle:.0f} MB")]
    rows += delivery_rows(bench, "poll", d.latencies(), lost, None, 0.100)
    rows.append(Row(bench, "load", f"{rate:g} msg/s for {seconds:g} s", phase.describe()))
    rows.append(Row(bench, "set-up", f"{setup:.0f} s", "logins, starts and accepts"))
    notes.extend(f"{bench}: {e}" for e in d.errors[:3])
    if d.send_errors:
        notes.append(f"{bench}: {d.send_errors} counsellor sends failed")
    return rows


def capacity(work: Path, accounts: Path, conversations: int, rate: float, seconds: float,
             notes: list[str]) -> list[Row]:
    """Benchmark 3: memory with every conversation's frame held, and poll p99 under sending."""
    server = Server(work, "capacity", limits(conversations), accounts)
    with running(server):
        rows = asyncio.run(_capacity(server, conversations, rate, seconds, notes))
    notes.extend(f"3 capacity: {p}" for p in server.problems())
    return rows


async def _logins(server: Server, conversations: int, logins: int, rate: float, seconds: float,
                  notes: list[str]) -> list[Row]:
    bench = f"4 logins ({conversations:,} polling)"
    loop = asyncio.get_running_loop()
    login_times: list[float] = []
    async with Run(server, conversations) as run:
        began = loop.time()
        sending = asyncio.create_task(send_at_rate(run.pop, rate, 2 * seconds, run.delivery))
        await asyncio.sleep(seconds)
        window_start = loop.time()
        waves = 0
        # Waves of concurrent logins until the second half of the sending is over (at most 5).
        while loop.time() < began + 2 * seconds - 1 and waves < 5:
            staff = [Counsellor(name, await Connection.open(server.staff_port)) for name in login_names(logins)]
            login_times += await asyncio.gather(*(c.login(timeout=60) for c in staff))
            for c in staff:
                c.conn.close()
            waves += 1
        window_end = loop.time()
        await sending
        lost = await drain(run.pop)
        d = run.delivery
    base = d.latencies(began + 0.5, window_start)
    during = d.latencies(window_start, window_end)
    p99_base, p99_during = percentile(base, 99), percentile(during, 99)
    ratio = p99_during / p99_base if p99_base > 0 else math.inf
    rows = [Row(bench, "poll p99 without logins", ms(p99_base), f"{len(base)} messages"),
            Row(bench, f"poll p99 during {logins} logins", ms(p99_during), f"<= 2 x {ms(p99_base)}",
                f"{ratio:.2f}", verdict(ratio <= 2 and lost == 0)),
            Row(bench, "poll p50 without / during", f"{ms(percentile(base, 50))} / {ms(percentile(during, 50))}",
                f"{len(during)} messages during, {lost} lost"),
            Row(bench, "login time p50 / max", f"{ms(percentile(login_times, 50))} / {ms(max(login_times))}",
                f"{waves} waves of {logins} at once")]
    notes.extend(f"{bench}: {e}" for e in d.errors[:3])
    return rows


def logins(work: Path, accounts: Path, conversations: int, logins: int, rate: float, seconds: float,
           notes: list[str]) -> list[Row]:
    """Benchmark 4: visitor poll p99 while staff log in (argon2id) vs without logins."""
    server = Server(work, "logins", limits(conversations), accounts)
    with running(server):
        rows = asyncio.run(_logins(server, conversations, logins, rate, seconds, notes))
    notes.extend(f"4 logins: {p}" for p in server.problems())
    return rows
