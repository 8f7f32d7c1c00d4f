"""Faults: kill -9 in the middle of account and statistics writes; SIGTERM with open chats.

ONIONCHAT_FUZZ=full kills each writer 100 times; CI kills each 30 times.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from onionchat.accounts import AccountStore, Role
from onionchat.stats import Stats
from tests.conftest import PASSWORD, fast_hasher
from tests.liveserver import live_server, next_frame_url, visitor_in_chat

KILLS = 100 if os.environ.get("ONIONCHAT_FUZZ") == "full" else 30

# A single-threaded helper that forks one writer per round (importing onionchat once, not 100
# times); the test kills each writer with SIGKILL at a random moment.
FORKER = r"""
import asyncio, os, sys
from pathlib import Path
from argon2 import PasswordHasher, Type
from onionchat.accounts import AccountStore, Role
from onionchat.chat import ChatEvent, EventKind
from onionchat.stats import Stats

kind, data_dir = sys.argv[1], Path(sys.argv[2])

def accounts() -> None:
    store = AccountStore(data_dir, hasher=PasswordHasher(time_cost=1, memory_cost=8, parallelism=1, type=Type.ID))
    i = 0
    while True:
        i += 1
        store.set_password("carla", f"password number {i:08d} is long")
        name = f"temp{i % 7}"
        if store.get(name):
            store.remove(name)
        else:
            store.add(name, "a long enough password", Role.COUNSELLOR)

def stats() -> None:
    counts = Stats(data_dir)
    async def run() -> None:
        i = 0
        while True:
            i += 1
            counts.on_event(ChatEvent(EventKind.OFFERED, f"c{i}"))
            await counts.flush()
    asyncio.run(run())

for _ in sys.stdin:
    pid = os.fork()
    if pid == 0:
        try:
            accounts() if kind == "accounts" else stats()
        finally:
            os._exit(1)
    print(pid, flush=True)
    os.waitpid(pid, 0)
    print("reaped", flush=True)
"""


def offered(stats: Stats) -> int:
    return sum(tables.get("chats", {}).get("offered", 0) for tables in stats.snapshot().values())


def kill_rounds(kind: str, data_dir: Path, check: object) -> dict[str, float]:
    """Fork a writer, SIGKILL it after a random delay, check the file; KILLS times."""
    rng = random.Random(0xC0FFEE)
    forker = subprocess.Popen([sys.executable, "-c", FORKER, kind, str(data_dir)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, cwd=Path(__file__).parent.parent)
    assert forker.stdin is not None and forker.stdout is not None
    leftovers = 0
    try:
        for _ in range(KILLS):
            forker.stdin.write(b"go\n")
            forker.stdin.flush()
            pid = int(forker.stdout.readline())
            time.sleep(rng.uniform(0.005, 0.25))  # the random moment of the crash (not a race fix)
            os.kill(pid, signal.SIGKILL)
            assert forker.stdout.readline() == b"reaped\n"
            assert callable(check)
            check()
            leftovers = max(leftovers, len(list(data_dir.glob(".*.tmp"))))
    finally:
        forker.stdin.close()
        forker.wait(10)
        forker.stdout.close()
    return {"max_leftover_temp_files": leftovers}


def test_kill_9_during_account_writes_leaves_a_complete_file(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    store = AccountStore(data_dir, hasher=fast_hasher())
    for name, role in (("carla", Role.COUNSELLOR), ("dirk", Role.COUNSELLOR), ("sam", Role.SUPERVISOR)):
        store.add(name, PASSWORD, role)
    seen_passwords: list[str] = []

    def check() -> None:
        loaded = AccountStore(data_dir, hasher=fast_hasher())  # parses, or raises StorageError
        names = {a.name for a in loaded.all()}
        assert {"carla", "dirk", "sam"} <= names, names
        for account in loaded.all():
            assert account.password_hash.startswith("$argon2id$"), account
        carla = loaded.get("carla")
        assert carla is not None
        seen_passwords.append(carla.password_hash)

    figures = kill_rounds("accounts", data_dir, check)
    assert len(set(seen_passwords)) > KILLS // 2, "the writer was really killed mid-way, at many points"
    assert oct((data_dir / "accounts.json").stat().st_mode & 0o777) == "0o600"
    print(f"\naccounts: {KILLS} kills survived; {figures}")


def test_kill_9_during_statistics_writes_leaves_a_complete_file(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    history = [0]

    def check() -> None:
        count = offered(Stats(data_dir))  # parses and passes the format check, or raises
        assert count >= history[-1], "counts never go back"
        history.append(count)

    figures = kill_rounds("stats", data_dir, check)
    assert history[-1] > KILLS, "the writer flushed many times between kills"
    print(f"\nstatistics: {KILLS} kills survived, {history[-1]} counts kept; {figures}")


def test_temp_files_left_by_a_crash_are_ignored_and_cleaned(tmp_path: Path) -> None:
    """A crash between the temp file and the rename leaves '.accounts.json.XXXX.tmp' behind."""
    data_dir = tmp_path / "data"
    store = AccountStore(data_dir, hasher=fast_hasher())
    store.add("carla", PASSWORD, Role.COUNSELLOR)
    stale = data_dir / ".accounts.json.crashed1.tmp"
    stale.write_text('{"accounts": {"mallory": {"role": "admin", "password_hash": "x"}}')  # torn, and wrong
    old = time.time() - 3600
    os.utime(stale, (old, old))
    loaded = AccountStore(data_dir, hasher=fast_hasher())
    assert [a.name for a in loaded.all()] == ["carla"], "a temp file is never read"
    loaded.add("dirk", PASSWORD, Role.COUNSELLOR)
    assert not stale.exists(), "the next write removes temp files a crash left behind"


def server_has_read(server_port: int, client_port: int) -> bool:
    """True when the server side of this loopback connection has nothing unread (/proc/net/tcp)."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, queues = fields[1], fields[2], fields[4]
        if int(local.split(":")[1], 16) == server_port and int(remote.split(":")[1], 16) == client_port:
            return int(queues.split(":")[1], 16) == 0
    return False


@pytest.mark.parametrize(("event_loop", "runs_on"), [("auto", "uvloop"), ("asyncio", "asyncio")])
async def test_sigterm_tells_open_chats_and_exits_within_seconds(tmp_path: Path, event_loop: str,
                                                                 runs_on: str) -> None:
    """On uvloop (the default on Linux) and on asyncio's own loop alike."""
    with live_server(tmp_path, {"poll": {"hold_seconds": 30}, "hours": {"open_without_staff": True},
                                "server": {"event_loop": event_loop}}, {"carla": "counsellor"}) as server:
        assert f"starting on the {runs_on}" in server.log
        port = server.visitor_port
        cookies = [await visitor_in_chat(server, nickname) for nickname in ("Ana", "Ben")]
        held: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        for cookie in cookies:  # both chats exist now: nothing changes until the signal
            refresh = await next_frame_url(server, cookie)
            # The frame's next request, held (up to 30 s) until something changes, as a browser's is.
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(f"GET {refresh} HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: {cookie}\r\n\r\n".encode())
            await writer.drain()
            client_port = writer.get_extra_info("sockname")[1]
            deadline = time.monotonic() + 10
            while not server_has_read(port, client_port):  # the server has taken the request in
                assert time.monotonic() < deadline, "the held request never reached the server"
                await asyncio.sleep(0.01)
            held.append((reader, writer))
        started = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        for reader, writer in held:
            answer = await asyncio.wait_for(reader.read(), 10)
            writer.close()
            assert answer.startswith(b"HTTP/1.1 200") and b"The chat service is closing" in answer, answer[:300]
        code = await asyncio.to_thread(server.process.wait, 10)
        took = time.monotonic() - started
    assert code == 0 and took < 5, f"exit {code} after {took:.1f} s"
    print(f"\nSIGTERM on {runs_on}: both held frames told 'closing', exit 0 after {took:.2f} s")


def test_a_write_without_a_free_file_descriptor_is_a_storage_error_not_a_crash(tmp_path: Path) -> None:
    """Out of open files (a flood of connections), a write is refused as a StorageError.

    The flush at shutdown failed with a bare OSError and onionchat exited 1 (found by bench/abuse.py).
    """
    script = (
        "import resource, sys\n"
        "from pathlib import Path\n"
        "from onionchat import storage\n"
        "from onionchat.errors import StorageError\n"
        "held = []\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (64, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))\n"
        "try:\n"
        "    while True:\n"
        "        held.append(open('/dev/null'))\n"
        "except OSError:\n"
        "    pass\n"
        "try:\n"
        f"    storage.write_atomic(Path({str(tmp_path / 'stats.json')!r}), b'{{}}')\n"
        "except StorageError as exc:\n"
        "    print('StorageError', exc)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("StorageError cannot write"), result.stdout
