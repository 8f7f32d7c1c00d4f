"""Benchmark 1: poll throughput of a 20-message frame with wrk against a bare aiohttp reference; frame sizes."""

from __future__ import annotations

import asyncio
import re
import shutil
import statistics
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.flows import Counsellor, Visitor, expect
from bench.http import Connection
from bench.proc import Reference, Server, running
from bench.profile import Profiler
from bench.report import Row, ms, verdict
from onionchat.eventloop import loop_factory

MESSAGES = 20
TARGET_RATIO = 0.8
LOOPS = ("asyncio", "uvloop")
RUNS = ((50, 1), (50, 2), (200, 1))  # (connections, wrk threads)
GROWTH = (5, 50, 500)  # conversation lengths at which the frames' bytes per poll are measured
# At 50 messages the frame's first line is the short "a counsellor joined" line; at 500 it is a
# whole message, and the link to the earlier messages appears: together about 400 bytes.
GROWTH_SLACK = 512
# About 300 characters a message gives a page near the 9.4 KB of the field notes' reference.
SENTENCE = ("I am writing from a phone that is not mine, so I can only stay a few minutes at a time. "
            "They keep our papers and say we owe them more every week. Two of us want to leave but we "
            "do not know where to go, and we are afraid of what happens to the others if we do.")


@dataclass(slots=True)
class WrkResult:
    """What wrk reports: requests per second, latency p50/p99, failed requests."""

    rps: float
    p50: float
    p99: float
    errors: int


def _seconds(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[unit]


def wrk(port: int, path: str, cookie: str, connections: int, seconds: float, threads: int = 1) -> WrkResult:
    """Run wrk (one thread by default: the other core serves) and parse its summary."""
    binary = shutil.which("wrk")
    if binary is None:
        raise RuntimeError("wrk is missing: apt-get install -y wrk")
    args = [binary, f"-t{threads}", f"-c{connections}", f"-d{seconds:g}s", "--latency", "--timeout", "10s",
            "-H", f"Cookie: {cookie}", f"http://127.0.0.1:{port}{path}"]
    out = subprocess.run(args, capture_output=True, text=True, timeout=seconds + 30, check=True).stdout  # noqa: S603
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _seconds(re.search(r"\s50%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    p99 = _seconds(re.search(r"\s99%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    errors = 0
    for pattern in (r"Non-2xx or 3xx responses:\s+(\d+)", r"Socket errors:.*?timeout (\d+)"):
        match = re.search(pattern, out)
        if match:
            errors += int(match.group(1))
    for kind in ("connect", "read", "write"):
        match = re.search(rf"{kind} (\d+)", out)
        if match and "Socket errors" in out:
            errors += int(match.group(1))
    return WrkResult(rps, p50, p99, errors)


async def prepare(server: Server) -> tuple[str, str, int]:
    """A conversation with 20 messages; returns the visitor's cookie, the frame path and its size."""
    visitor = Visitor(0, await Connection.open(server.visitor_port))
    counsellor = Counsellor("c000", await Connection.open(server.staff_port))
    await counsellor.login()
    await visitor.start()
    await counsellor.accept([visitor])  # the "counsellor joined" line is message 1
    for n in range(MESSAGES - 1):
        text = f"{n + 2}. {SENTENCE}"
        if n % 2:
            await counsellor.send(visitor, text)
        else:
            await visitor.send(text)
    first = await visitor.frame("/chat/messages", timeout=10)
    path = first.refresh_url()
    page = expect(await visitor.conn.request("GET", path, cookie=visitor.cookie), 200, "frame")
    if page.body.count(b'class="msg ') != MESSAGES:
        raise RuntimeError("the frame does not show 20 messages")
    visitor.conn.close()
    counsellor.conn.close()
    return visitor.cookie, path, len(page.body)


def _pairs(server: Server, ref: Reference, path: str, cookie: str, connections: int, threads: int,
           seconds: float, rounds: int, name: str) -> tuple[list[WrkResult], list[WrkResult], float, float]:
    """Alternating (reference, onionchat) wrk runs; their results and the CPU seconds each server used."""
    wrk(ref.port, path, cookie, connections, 1, threads)  # warm-up of both
    wrk(server.visitor_port, path, cookie, connections, 1, threads)
    bases: list[WrkResult] = []
    ours: list[WrkResult] = []
    cpu = base_cpu = 0.0
    for n in range(rounds):
        for which in ((0, 1) if n % 2 == 0 else (1, 0)):
            if which == 0:
                cpu0 = ref.cpu_seconds()
                bases.append(wrk(ref.port, path, cookie, connections, seconds, threads))
                base_cpu += ref.cpu_seconds() - cpu0
                continue
            cpu0 = server.cpu_seconds()
            with Profiler(server.pid, f"{name}-{n}"):
                ours.append(wrk(server.visitor_port, path, cookie, connections, seconds, threads))
            cpu += server.cpu_seconds() - cpu0
    return ours, bases, cpu, base_cpu


def running_loop(server: Server) -> str:
    """The event loop the server says it started on (its INFO start-up line)."""
    found = re.search(r"starting on the (.+?) event loop", server.log_text())
    return found.group(1) if found else "unknown"


def throughput_on(work: Path, accounts: Path, loop: str, runs: tuple[tuple[int, int], ...], seconds: float,
                  rounds: int, notes: list[str]) -> list[Row]:
    """Benchmark 1 on one event loop: onionchat and the reference both run on ``loop``.

    Each (connections, wrk threads) runs ``rounds`` pairs of (reference, onionchat), alternating
    which goes first; the figures are medians, and the ratio is the median of the pairs' ratios,
    so that a burst of load from other processes on a shared machine moves one pair, not the result.
    """
    settings: dict[str, dict[str, Any]] = {"server": {"event_loop": loop, "log_level": "INFO"},
                                           "poll": {"mode": "interval"}, "limits": {"messages_per_minute": 10_000}}
    server = Server(work, f"throughput-{loop}", settings, accounts)
    rows: list[Row] = []
    with running(server):
        cookie, path, size = asyncio.run(prepare(server))
        rows.append(Row(f"1 throughput {loop}", "event loop (server log)", running_loop(server),
                        f"{size:,} B frame, {rounds} x {seconds:g} s per figure"))
        with Reference(size, loop) as ref:
            for connections, threads in runs:
                bench = f"1 throughput {loop} c={connections} -t{threads}"
                ours, bases, cpu, base_cpu = _pairs(server, ref, path, cookie, connections, threads, seconds,
                                                    rounds, f"throughput-{loop}-{connections}-t{threads}")
                ratio = statistics.median(o.rps / b.rps for o, b in zip(ours, bases, strict=True))
                rps, base_rps = statistics.median(o.rps for o in ours), statistics.median(b.rps for b in bases)
                spread = f"{min(o.rps / b.rps for o, b in zip(ours, bases, strict=True)):.2f}-" \
                         f"{max(o.rps / b.rps for o, b in zip(ours, bases, strict=True)):.2f}"
                target = f">= {TARGET_RATIO} x ref" if connections == 50 else ""
                rows.append(Row(bench, "polls/s", f"{rps:,.0f}", f"ref {base_rps:,.0f}/s {target}".strip(),
                                f"{ratio:.2f}", verdict(ratio >= TARGET_RATIO) if connections == 50 else ""))
                p50, p99 = statistics.median(o.p50 for o in ours), statistics.median(o.p99 for o in ours)
                rows.append(Row(bench, "latency p50 / p99", f"{ms(p50)} / {ms(p99)}",
                                f"ref {ms(statistics.median(b.p50 for b in bases))} / "
                                f"{ms(statistics.median(b.p99 for b in bases))}; pair ratios {spread}"))
                # CPU time per answered request: what each poll costs, much less moved by other
                # processes taking cores than requests per second are.
                per = cpu / sum(o.rps * seconds for o in ours)
                base_per = base_cpu / sum(b.rps * seconds for b in bases)
                rows.append(Row(bench, "server CPU per poll", f"{per * 1e6:.0f} us",
                                f"ref {base_per * 1e6:.0f} us; server {100 * cpu / (seconds * rounds):.0f} % CPU",
                                f"{base_per / per:.2f}"))
                errors, base_errors = sum(o.errors for o in ours), sum(b.errors for b in bases)
                if errors or base_errors:
                    notes.append(f"{bench}: {errors} failed requests (reference {base_errors})")
    notes.extend(f"1 throughput {loop}: {p}" for p in server.problems())
    return rows


def throughput(work: Path, accounts: Path, seconds: float, rounds: int, notes: list[str]) -> list[Row]:
    """Benchmark 1 on asyncio's loop and on uvloop (the default where installed), then frame sizes."""
    rows: list[Row] = []
    for loop in LOOPS:
        if loop == "uvloop" and loop_factory("auto") is None:
            notes.append("1 throughput: uvloop is not installed here, so only asyncio's loop was measured")
            continue
        runs = RUNS if loop == "uvloop" else RUNS[:2]  # 200 connections on the default loop only
        rows += throughput_on(work, accounts, loop, runs, seconds, rounds, notes)
    rows += frame_sizes(work, accounts, notes)
    return rows


async def grow(server: Server, sizes: tuple[int, ...]) -> list[tuple[int, int, int]]:
    """One conversation grown to each of ``sizes`` messages: (messages, visitor poll bytes, staff poll bytes).

    Every message has the same length (a zero-padded number), so that any growth is the frame's.
    """
    visitor = Visitor(0, await Connection.open(server.visitor_port))
    counsellor = Counsellor("c000", await Connection.open(server.staff_port))
    await counsellor.login()
    await visitor.start()
    await counsellor.accept([visitor])  # the "counsellor joined" line is message 1
    staff_path = f"/chat/{visitor.cid}/messages"
    out = []
    count = 1
    for target in sizes:
        while count < target:
            count += 1
            text = f"{count:05d}. {SENTENCE}"
            await (counsellor.send(visitor, text) if count % 2 else visitor.send(text))
        seen = await visitor.frame("/chat/messages", timeout=10)
        # The poll a browser makes next: its Refresh URL, answered at once in interval mode.
        poll = await visitor.frame(seen.refresh_url(), timeout=10)
        first = expect(await counsellor.conn.request("GET", staff_path, cookie=counsellor.cookie), 200, "staff frame")
        staff = expect(await counsellor.conn.request("GET", first.refresh_url(), cookie=counsellor.cookie), 200,
                       "staff frame")
        out.append((count, poll.size, staff.size))
    visitor.conn.close()
    counsellor.conn.close()
    return out


def frame_sizes(work: Path, accounts: Path, notes: list[str]) -> list[Row]:
    """Bytes per poll of the visitor's and the counsellor's frames at 5, 50 and 500 messages."""
    settings: dict[str, dict[str, Any]] = {"poll": {"mode": "interval"}, "limits": {"messages_per_minute": 10_000}}
    server = Server(work, "frame-sizes", settings, accounts)
    with running(server):
        sizes = asyncio.run(grow(server, GROWTH))
    rows = []
    by_count = {count: (v, s) for count, v, s in sizes}
    for which, column in (("visitor", 0), ("staff", 1)):
        at_50, at_500 = by_count[50][column], by_count[500][column]
        values = " / ".join(f"{by_count[n][column]:,}" for n in GROWTH)
        rows.append(Row(f"1 frame size {which}", "bytes per poll at 5 / 50 / 500 msgs", values,
                        f"500 <= 50 + {GROWTH_SLACK} B", f"{at_500 / at_50:.3f}",
                        verdict(at_500 <= at_50 + GROWTH_SLACK)))
    notes.extend(f"1 frame size: {p}" for p in server.problems())
    return rows
