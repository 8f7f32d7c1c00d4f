"""``python -m bench``: run the seven benchmarks and print one table (see bench/README.md)."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

from bench import abuse, load, proc, profile, startup, throughput, tor
from bench.report import Row, table
from onionchat.web.server import raise_open_file_limit

LOGINS = 20


def main(argv: list[str] | None = None) -> int:
    """Parse options, run the chosen benchmarks, print (and optionally save) the table."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--only", default="1,2,3,4,5,6,7", help="comma-separated benchmark numbers (default: all)")
    parser.add_argument("--quick", action="store_true", help="shorter runs and 2,000 instead of 10,000 "
                        "conversations: a smoke test, not figures to quote")
    parser.add_argument("--out", metavar="FILE", help="also write the table to FILE")
    parser.add_argument("--source", metavar="DIR", help="run onionchat from this source tree (e.g. a git "
                        "worktree of another commit) instead of the installed one")
    parser.add_argument("--profile", metavar="DIR", help="record py-spy profiles of the server during each "
                        "measured phase into DIR (slows the server a little)")
    parser.add_argument("--loop", choices=("auto", "uvloop", "asyncio"), default="auto",
                        help="server.event_loop of the servers of benchmarks 2-6 (benchmark 1 measures both)")
    args = parser.parse_args(argv)
    proc.EVENT_LOOP = args.loop
    if args.profile:
        profile.PROFILE_DIR = Path(args.profile)
    if args.source:
        # The server processes inherit it; PYTHONPATH comes before the editable install's path.
        source = str(Path(args.source).resolve())
        os.environ["PYTHONPATH"] = source
        sys.path.insert(0, source)
    chosen = {int(n) for n in args.only.split(",") if n.strip()}
    quick = args.quick
    seconds = 4.0 if quick else 10.0
    capacity_n = 2000 if quick else 10_000
    rate = 200.0  # counsellor messages per second in total (see README: far above real typing)

    fd_limit = raise_open_file_limit(20_000)  # children inherit it: the server needs 10,000+
    if 3 in chosen and fd_limit < capacity_n + 1000:
        print(f"open-file limit is {fd_limit}: too low for {capacity_n:,} connections", file=sys.stderr)
        return 2
    notes = ["client and server share the same cores (wrk or the asyncio client process uses CPU the server "
             "would otherwise have); 'server N % CPU' is of one core"]
    rows: list[Row] = []
    began = time.monotonic()
    with proc.workdir() as work:
        accounts = proc.make_accounts(work / "accounts", load.counsellor_names(capacity_n // load.MAX_CHATS)
                                      + load.login_names(LOGINS))
        plan: list[tuple[int, str, Callable[[], list[Row]]]] = [
            (1, "poll throughput", lambda: throughput.throughput(work, accounts, seconds / 2, 3, notes)),
            (2, "delivery latency", lambda: load.delivery(work, accounts, 100, 20.0, seconds * 1.5, notes)
             + load.delivery(work, accounts, 1000, rate, seconds * 1.5, notes)),
            (3, "capacity", lambda: load.capacity(work, accounts, capacity_n, rate, seconds * 1.5, notes)),
            (4, "logins under load", lambda: load.logins(work, accounts, 1000, LOGINS, rate, seconds, notes)),
            (5, "start-up", lambda: startup.startup(work, accounts, 3 if quick else 5, notes)),
            (6, "delivery through Tor", lambda: tor.tor_delivery(work, accounts, 20 if quick else 60, notes)),
            (7, "abuse", lambda: asyncio.run(abuse.run_all(
                work, accounts, list(abuse.ATTACKS), [1, 100] if quick else list(abuse.CIRCUIT_COUNTS),
                8.0 if quick else 20.0, 1.0, notes))),
        ]
        for number, name, run in plan:
            if number not in chosen:
                continue
            print(f"[{time.monotonic() - began:5.0f} s] benchmark {number}: {name} ...", file=sys.stderr, flush=True)
            t0, busy0, own0 = time.monotonic(), proc.busy_seconds(), proc.own_seconds()
            try:
                rows += run()
            except Exception as exc:  # noqa: BLE001 - one failed benchmark must not hide the others' figures
                notes.append(f"benchmark {number} ({name}) FAILED: {type(exc).__name__}: {exc}")
            # Other work on a shared machine takes cores from both server and client: say how much.
            other = (proc.busy_seconds() - busy0) - (proc.own_seconds() - own0)
            share = 100 * max(0.0, other) / (time.monotonic() - t0)
            notes.append(f"benchmark {number}: other processes used {share:.0f} % of a core on average "
                         f"meanwhile (loadavg {os.getloadavg()[0]:.1f})")
    notes.append(f"whole run: {time.monotonic() - began:.0f} s")
    text = table(rows, proc.machine(), notes)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 1 if any(r.verdict == "MISS" for r in rows) or any("FAILED" in n for n in notes) else 0


if __name__ == "__main__":
    sys.exit(main())
