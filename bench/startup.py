"""Benchmark 5: time from spawning ``onionchat serve --local`` to its first answered request."""

from __future__ import annotations

import http.client
import statistics
import time
from pathlib import Path

from bench.proc import Server
from bench.report import Row, ms, verdict

TARGET = 1.0


def first_answer(server: Server, timeout: float = 10.0) -> float:
    """Seconds from the spawn until GET / on the visitor site is answered with 200."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        conn = http.client.HTTPConnection("127.0.0.1", server.visitor_port, timeout=2)
        try:
            conn.request("GET", "/")
            if conn.getresponse().status == 200:
                return time.perf_counter() - server.started_at
        except OSError:
            time.sleep(0.002)  # not listening yet: try again soon, without spinning a core
        finally:
            conn.close()
    raise RuntimeError(f"no answer within {timeout} s: {server.log_tail()}")


def startup(work: Path, accounts: Path, runs: int, notes: list[str]) -> list[Row]:
    """Start the server ``runs`` times (each with a fresh data dir and the accounts file)."""
    times: list[float] = []
    stops: list[float] = []
    for n in range(runs):
        server = Server(work, f"startup{n}", {}, accounts)
        try:
            server.start(wait=False)
            times.append(first_answer(server))
        finally:
            server.stop()
        stops.append(server.stop_seconds)
        notes.extend(f"5 start-up: {p}" for p in server.problems())
    median, worst = statistics.median(times), max(times)
    return [Row("5 start-up", "first answer, median", ms(median), f"<= {ms(TARGET)}", "", verdict(worst <= TARGET)),
            Row("5 start-up", "first answer, max", ms(worst), f"{runs} starts"),
            Row("5 start-up", "SIGTERM to exit, max", ms(max(stops)), "idle server")]
