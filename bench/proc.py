"""Processes under test: onionchat serve --local with a temp config, the reference app, the machine."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import platform
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

VENV_BIN = Path(sys.executable).parent
PASSWORD = "a long enough bench password"  # noqa: S105 - throwaway accounts in a temp dir
# Ports below the kernel's ephemeral range (32768-60999), so that the client's own
# connections (10,000 of them) can never collide with a listening port.
PORT_BASE = 21000
_next_port = PORT_BASE
# Set by ``python -m bench --loop``: server.event_loop of every server (benchmark 1 sets its own).
# "auto" writes nothing, so that trees from before the setting can be measured with --source.
EVENT_LOOP = "auto"


def free_port() -> int:
    """The next port from PORT_BASE up that nothing listens on."""
    global _next_port  # a counter for one bench run
    for _ in range(2000):
        port = _next_port
        _next_port += 1
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port below the ephemeral range")


def machine() -> dict[str, str]:
    """CPU model, cores, Python, aiohttp and the date: printed with every table."""
    model = platform.processor() or "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cpu": model,
        "cores": str(os.cpu_count()),
        "python": platform.python_version(),
        "aiohttp": aiohttp.__version__,
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "kernel": platform.release(),
    }


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time process ``pid`` has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def busy_seconds() -> float:
    """CPU seconds all processes on the machine have used since boot (from /proc/stat)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def own_seconds() -> float:
    """CPU seconds of this process and its finished children (servers, wrk, the reference)."""
    self, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return self.ru_utime + self.ru_stime + children.ru_utime + children.ru_stime


def toml_value(value: Any) -> str:
    """A TOML literal for a str, bool, int or a list of them."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_config(path: Path, sections: dict[str, dict[str, Any]]) -> None:
    """Write a TOML config file from nested dicts."""
    lines = []
    for name, values in sections.items():
        lines.append(f"[{name}]")
        lines.extend(f"{key} = {toml_value(value)}" for key, value in values.items())
        lines.append("")
    path.write_text("\n".join(lines))


def make_accounts(directory: Path, names: list[str]) -> Path:
    """An accounts file with ``names`` as counsellors, hashed at production parameters.

    Every account gets the same argon2id hash (one hash, random salt, 64 MiB, t=4), made
    once: logins still verify at full cost, but writing 220 accounts takes a second, not a
    minute. The file is written by onionchat's own AccountStore, so its format is the real one.
    """
    from argon2 import PasswordHasher

    from onionchat.accounts import AccountStore, Role, make_hasher

    class OneHash(PasswordHasher):
        """The production hasher, but hash() returns one precomputed hash."""

        def __init__(self) -> None:
            real = make_hasher()
            super().__init__(time_cost=real.time_cost, memory_cost=real.memory_cost,
                             parallelism=real.parallelism, hash_len=real.hash_len,
                             salt_len=real.salt_len, type=real.type)
            self._hash = real.hash(PASSWORD)

        def hash(self, password: str | bytes, *, salt: bytes | None = None) -> str:
            return self._hash

    directory.mkdir(parents=True, exist_ok=True)
    store = AccountStore(directory, hasher=OneHash())
    for name in names:
        if store.get(name) is None:
            store.add(name, PASSWORD, Role.COUNSELLOR)
    return store.path


def has_module(name: str) -> bool:
    """Whether the onionchat the servers run (``--source`` tree or the installed one) has module ``name``.

    Lets one bench measure an older tree (one without a setting section the newer has).
    """
    source = os.environ.get("PYTHONPATH")
    if source:
        return (Path(source) / Path(*name.split("."))).with_suffix(".py").exists()
    return importlib.util.find_spec(name) is not None


# Without Tor every client of a benchmark is the one circuit "local": budgets per circuit
# (issue 10) would refuse a load that many real circuits spread out. Benchmarks other than
# bench/abuse.py are about throughput and latency, so they lift them.
NO_CIRCUIT_BUDGETS: dict[str, Any] = {"sessions": 1_000_000, "chats": 100_000, "resumes": 100_000,
                                      "connections": 100_000, "requests_per_second": 100_000}


class Server:
    """``onionchat serve --local`` in its own process with a temp data dir; SIGTERM to stop.

    ``budgets``: keep the per-circuit budgets as configured (bench/abuse.py); otherwise they
    are lifted (NO_CIRCUIT_BUDGETS), where the server has them. ``nofile``: the server's hard
    limit on open files (default: this process's).
    """

    def __init__(self, work: Path, name: str, settings: dict[str, dict[str, Any]],
                 accounts: Path | None = None, *, local: bool = True, budgets: bool = False,
                 nofile: int | None = None) -> None:
        self.local = local  # False: published on Tor as the settings' [tor] section says
        self.start_timeout = 20.0 if local else 240.0  # a launched tor bootstraps and publishes first
        self.printed: dict[str, str] = {}  # "visitor"/"staff" -> the address it printed
        self.dir = work / name
        self.dir.mkdir(parents=True)
        os.chmod(self.dir, 0o700)
        self.visitor_port = free_port()
        self.staff_port = free_port()
        sections: dict[str, dict[str, Any]] = {
            "server": {"visitor_port": self.visitor_port, "staff_port": self.staff_port,
                       "data_dir": str(self.dir), "log_level": "WARNING"}}
        if EVENT_LOOP != "auto":
            sections["server"]["event_loop"] = EVENT_LOOP
        if not budgets and has_module("onionchat.circuits"):
            sections["circuits"] = dict(NO_CIRCUIT_BUDGETS)
        for section, values in settings.items():
            sections.setdefault(section, {}).update(values)
        self.config = self.dir / "onionchat.toml"
        write_config(self.config, sections)
        if accounts is not None:
            shutil.copy(accounts, self.dir / accounts.name)
            os.chmod(self.dir / accounts.name, 0o600)
        self.nofile = nofile
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0
        self.stop_seconds = 0.0
        self.killed = False
        self.returncode: int | None = None

    def start(self, wait: bool = True, timeout: float | None = None) -> None:
        """Start the server; with ``wait``, return once it printed both addresses."""
        timeout = self.start_timeout if timeout is None else timeout
        self.log = (self.dir / "server.log").open("wb")
        self.started_at = time.perf_counter()
        nofile = self.nofile

        def limit_files() -> None:
            if nofile is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

        self.proc = subprocess.Popen(  # noqa: S603 - our own venv's command, fixed arguments
            [str(VENV_BIN / "onionchat"), "serve", *(["--local"] if self.local else []), "--config",
             str(self.config)],
            stdout=subprocess.PIPE, stderr=self.log, stdin=subprocess.DEVNULL, preexec_fn=limit_files)
        if not wait:
            return
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"onionchat exited at start-up: {self.log_tail()}")
            site, _, address = line.decode(errors="replace").partition(":")
            if site in ("visitor", "staff"):
                self.printed[site] = address.strip()
            if site == "staff":
                return
        raise RuntimeError("onionchat did not start in time")

    @property
    def pid(self) -> int:
        """The server's process id."""
        assert self.proc is not None
        return self.proc.pid

    def rss_mb(self) -> float:
        """Resident memory of the server process now, in MB (VmRSS)."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def cpu_seconds(self) -> float:
        """User plus system CPU time the server has used so far."""
        return cpu_seconds(self.pid)

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM, wait for a clean exit; SIGKILL (and say so) only if it hangs."""
        if self.proc is None or self.proc.poll() is not None:
            return
        began = time.perf_counter()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.returncode = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.killed = True
            self.proc.kill()
            self.returncode = self.proc.wait(5)
        self.stop_seconds = time.perf_counter() - began
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self.log.close()

    def log_text(self) -> str:
        """Everything the server has logged so far."""
        path = self.dir / "server.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def log_tail(self, lines: int = 5) -> str:
        """The last lines of the server's log (for error reports)."""
        path = self.dir / "server.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return " | ".join(text.strip().splitlines()[-lines:])

    def problems(self) -> list[str]:
        """What went wrong in the server: errors in its log, a forced kill, a bad exit code."""
        out = []
        text = (self.dir / "server.log").read_text(errors="replace")
        errors = [line for line in text.splitlines() if " ERROR " in line or "Traceback" in line]
        if errors:
            out.append(f"{len(errors)} error lines in the server log, e.g. {errors[0][:200]}")
        if self.killed:
            out.append("did not stop within 20 s of SIGTERM: killed")
        elif self.returncode not in (0, None):
            out.append(f"exit code {self.returncode} after SIGTERM")
        return out


class Reference:
    """The bare aiohttp app (bench/reference.py) in its own process."""

    def __init__(self, size: int, loop: str = "auto") -> None:
        self.port = free_port()
        self.size = size
        self.loop = loop  # the same event loop as the server it is compared with
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Reference:
        self.proc = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-m", "bench.reference", str(self.port), str(self.size), self.loop],
            stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, cwd=Path(__file__).parent.parent)
        assert self.proc.stdout is not None
        if not self.proc.stdout.readline().startswith(b"ready"):
            raise RuntimeError("the reference app did not start")
        return self

    def cpu_seconds(self) -> float:
        """CPU time the reference process has used so far."""
        assert self.proc is not None
        return cpu_seconds(self.proc.pid)

    def __exit__(self, *exc: object) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@contextlib.contextmanager
def workdir() -> Iterator[Path]:
    """A private temp directory for one bench run, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="onionchat-bench-") as name:
        os.chmod(name, 0o700)
        yield Path(name)


@contextlib.contextmanager
def running(server: Server) -> Iterator[Server]:
    """Start ``server`` and always stop it, even when the benchmark fails."""
    try:
        server.start()
        yield server
    finally:
        server.stop()
