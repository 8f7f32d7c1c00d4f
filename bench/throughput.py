"""Benchmark 1: poll throughput of a 20-message frame with wrk, against a bare aiohttp reference."""

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

MESSAGES = 20
TARGET_RATIO = 0.7
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


def wrk(port: int, path: str, cookie: str, connections: int, seconds: float) -> WrkResult:
    """Run wrk (one thread: the other core serves) and parse its summary."""
    binary = shutil.which("wrk")
    if binary is None:
        raise RuntimeError("wrk is missing: apt-get install -y wrk")
    args = [binary, "-t1", f"-c{connections}", f"-d{seconds:g}s", "--latency", "--timeout", "10s",
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


def throughput(work: Path, accounts: Path, seconds: float, rounds: int, notes: list[str]) -> list[Row]:
    """Benchmark 1 at 50 and 200 connections; reference and onionchat alternate in one run.

    Each connection count runs ``rounds`` pairs of (reference, onionchat), alternating which
    goes first; the figures are medians, and the ratio is the median of the pairs' ratios, so
    that a burst of load from other processes on a shared machine moves one pair, not the result.
    """
    settings: dict[str, dict[str, Any]] = {"poll": {"mode": "interval"}, "limits": {"messages_per_minute": 10_000}}
    server = Server(work, "throughput", settings, accounts)
    rows: list[Row] = []
    with running(server):
        cookie, path, size = asyncio.run(prepare(server))
        with Reference(size) as ref:
            for connections in (50, 200):
                wrk(ref.port, path, cookie, connections, 1)  # warm-up of both
                wrk(server.visitor_port, path, cookie, connections, 1)
                bases: list[WrkResult] = []
                ours: list[WrkResult] = []
                cpu = base_cpu = 0.0
                for n in range(rounds):
                    for which in ((0, 1) if n % 2 == 0 else (1, 0)):
                        if which == 0:
                            cpu0 = ref.cpu_seconds()
                            bases.append(wrk(ref.port, path, cookie, connections, seconds))
                            base_cpu += ref.cpu_seconds() - cpu0
                            continue
                        cpu0 = server.cpu_seconds()
                        with Profiler(server.pid, f"throughput{connections}-{n}"):
                            ours.append(wrk(server.visitor_port, path, cookie, connections, seconds))
                        cpu += server.cpu_seconds() - cpu0
                ratio = statistics.median(o.rps / b.rps for o, b in zip(ours, bases, strict=True))
                rps, base_rps = statistics.median(o.rps for o in ours), statistics.median(b.rps for b in bases)
                bench = f"1 throughput c={connections}"
                target = f">= {TARGET_RATIO} x ref" if connections == 50 else ""
                rows.append(Row(bench, "polls/s", f"{rps:,.0f}", f"ref {base_rps:,.0f}/s {target}".strip(),
                                f"{ratio:.2f}", verdict(ratio >= TARGET_RATIO) if connections == 50 else ""))
                p50, p99 = statistics.median(o.p50 for o in ours), statistics.median(o.p99 for o in ours)
                rows.append(Row(bench, "latency p50 / p99", f"{ms(p50)} / {ms(p99)}",
                                f"ref {ms(statistics.median(b.p50 for b in bases))} / "
                                f"{ms(statistics.median(b.p99 for b in bases))}"))
                # CPU time per answered request: what each poll costs, much less moved by other
                # processes taking cores than requests per second are.
                per = cpu / sum(o.rps * seconds for o in ours)
                base_per = base_cpu / sum(b.rps * seconds for b in bases)
                rows.append(Row(bench, "server CPU per poll", f"{per * 1e6:.0f} us",
                                f"ref {base_per * 1e6:.0f} us", f"{base_per / per:.2f}"))
                rows.append(Row(bench, "server CPU", f"{100 * cpu / (seconds * rounds):.0f} %",
                                f"{size:,} B frame, {rounds} x {seconds:g} s"))
                errors, base_errors = sum(o.errors for o in ours), sum(b.errors for b in bases)
                if errors or base_errors:
                    notes.append(f"{bench}: {errors} failed requests (reference {base_errors})")
    notes.extend(f"1 throughput: {p}" for p in server.problems())
    return rows
