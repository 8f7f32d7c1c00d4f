"""Benchmark 1: poll throughput of a 20-message frame with wrk, against a bare aiohttp reference."""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.flows import Counsellor, Visitor, expect
from bench.http import Connection
from bench.proc import Reference, Server, running
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


def throughput(work: Path, accounts: Path, seconds: float, notes: list[str]) -> list[Row]:
    """Benchmark 1 at 50 and 200 connections; reference and onionchat alternate in one run."""
    settings: dict[str, dict[str, Any]] = {"poll": {"mode": "interval"}, "limits": {"messages_per_minute": 10_000}}
    server = Server(work, "throughput", settings, accounts)
    rows: list[Row] = []
    with running(server):
        cookie, path, size = asyncio.run(prepare(server))
        with Reference(size) as ref:
            for connections in (50, 200):
                # A short warm-up of each, then the measured runs back to back.
                wrk(ref.port, path, cookie, connections, 2)
                wrk(server.visitor_port, path, cookie, connections, 2)
                base = wrk(ref.port, path, cookie, connections, seconds)
                cpu0 = server.cpu_seconds()
                ours = wrk(server.visitor_port, path, cookie, connections, seconds)
                cpu = (server.cpu_seconds() - cpu0) / seconds
                ratio = ours.rps / base.rps
                bench = f"1 throughput c={connections}"
                target = f">= {TARGET_RATIO} x ref" if connections == 50 else ""
                rows.append(Row(bench, "polls/s", f"{ours.rps:,.0f}", f"ref {base.rps:,.0f}/s {target}".strip(),
                                f"{ratio:.2f}", verdict(ratio >= TARGET_RATIO) if connections == 50 else ""))
                rows.append(Row(bench, "latency p50 / p99", f"{ms(ours.p50)} / {ms(ours.p99)}",
                                f"ref {ms(base.p50)} / {ms(base.p99)}", "",
                                ""))
                rows.append(Row(bench, "server CPU", f"{100 * cpu:.0f} %", f"{size:,} B frame"))
                if ours.errors or base.errors:
                    notes.append(f"{bench}: {ours.errors} failed requests (reference {base.errors})")
    notes.extend(f"1 throughput: {p}" for p in server.problems())
    return rows
