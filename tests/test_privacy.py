"""Privacy proof against a live server: no marker reaches a log, a file or a non-socket write."""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest

from tests.liveserver import (
    LOOPBACK,
    add_staff,
    child_env,
    fetch,
    free_port,
    onionchat_command,
    wait_until,
    write_config,
)

PASSWORD = "correct horse battery staple 42"
CSRF_RE = re.compile(r'name="_csrf" value="([^"]+)"')
WORDS_RE = re.compile(r'class="words">([^<]+)<')
# Spoofed request metadata: these values must never reach a log line.
SPOOF = {"X-Forwarded-For": "203.0.113.77", "X-Real-IP": "198.51.100.88",
         "User-Agent": "SpoofAgentMarker/9.9 (privacy-proof)", "Forwarded": "for=192.0.2.66"}
STAFF = {"carla": "counsellor", "dirk": "counsellor", "sam": "supervisor"}


@dataclass
class Server:
    """A live ``onionchat serve --local`` with its own cwd and TMPDIR, maybe under strace."""

    visitor: str
    staff: str
    home: Path
    data_dir: Path
    cwd: Path
    tmpdir: Path
    log_path: Path
    process: subprocess.Popen[bytes]
    trace_path: Path | None = None
    pid: int = 0  # the onionchat process itself (strace's child when traced)

    @property
    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")


def traced_child(strace_pid: int, timeout: float = 30.0) -> int:
    """The pid of the process strace started (its only child)."""
    found: list[int] = []

    def child() -> bool:
        path = Path(f"/proc/{strace_pid}/task/{strace_pid}/children")
        found[:] = [int(p) for p in path.read_text().split()] if path.exists() else []
        return bool(found)

    wait_until(child, timeout, "strace starting onionchat")
    return found[0]


@contextlib.contextmanager
def private_server(tmp: Path, *, trace: bool = False) -> Iterator[Server]:
    """Serve at DEBUG logging, cwd and TMPDIR in fresh temp directories; stop with SIGTERM."""
    home = tmp / "home"
    data_dir, cwd, tmpdir = home / "data", tmp / "cwd", tmp / "tmpdir"
    for d in (data_dir, cwd, tmpdir):
        d.mkdir(parents=True, mode=0o700)
    config_path = data_dir / "onionchat.toml"
    write_config(config_path, {
        "server": {"visitor_host": LOOPBACK, "visitor_port": free_port(), "staff_host": LOOPBACK,
                   "staff_port": free_port(), "data_dir": str(data_dir), "log_level": "DEBUG"},
        "poll": {"hold_seconds": 1},
        "hours": {"open_without_staff": True},
    })
    # The server runs as in production: without the test run's coverage measurement, whose
    # data file would be the one file it writes outside its data directory.
    env = {k: v for k, v in child_env(home).items() if not k.startswith("COVERAGE_")}
    env.update(TMPDIR=str(tmpdir), TEMP=str(tmpdir), TMP=str(tmpdir), PYTHONASYNCIODEBUG="1")
    for name, role in STAFF.items():
        add_staff(config_path, name, role, PASSWORD, env)
    # If the test process is killed, its server (and strace) die with it instead of lingering.
    die_with_parent = ["setpriv", "--pdeathsig", "KILL"] if shutil.which("setpriv") else []
    command = [*die_with_parent, *onionchat_command(), "serve", "--local", "--config", str(config_path)]
    trace_path = tmp / "strace.out" if trace else None
    if trace_path is not None:
        # -y names each fd's file, socket or pipe; -s large enough for whole pages.
        command = [*die_with_parent, "strace", "-f", "-y", "-qq", "-s", "65536", "-o", str(trace_path),
                   "-e", "trace=write,writev,pwrite64,pwritev,pwritev2,sendto,sendmsg,openat,prctl,prlimit64,setrlimit",
                   *command]
    log_path = home / "serve.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log_file,
                                   stderr=subprocess.STDOUT, env=env, cwd=cwd)
    server = Server("", "", home, data_dir, cwd, tmpdir, log_path, process, trace_path)
    try:
        server.pid = traced_child(process.pid) if trace else process.pid
        urls: dict[str, str] = {}

        def announced() -> bool:
            assert process.poll() is None, f"onionchat exited early:\n{server.log}"
            urls.update(re.findall(r"^(visitor|staff):\s+(http://\S+)$", server.log, re.MULTILINE))
            return len(urls) == 2

        wait_until(announced, 60, "printing both URLs")
        server.visitor, server.staff = urls["visitor"].rstrip("/"), urls["staff"].rstrip("/")

        def answering() -> bool:
            with contextlib.suppress(OSError):
                return fetch(server.visitor + "/", 2.0)[0] == 200
            return False

        wait_until(answering, 60, "the visitor site answering")
        yield server
    finally:
        if process.poll() is None:
            os.kill(server.pid or process.pid, signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    assert process.returncode == 0, f"exit {process.returncode}:\n{server.log}"


@dataclass
class Browser:
    """A cookie-keeping client of one live site, sending spoofed address and agent headers."""

    base: str
    session: aiohttp.ClientSession = field(init=False)
    csrf: str = ""

    def __post_init__(self) -> None:
        # unsafe=True: keep cookies from an IP-address host (127.0.0.1), as a browser does.
        self.session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True), headers=SPOOF)

    async def get(self, path: str) -> tuple[int, str, dict[str, str]]:
        async with self.session.get(self.base + path, allow_redirects=False) as response:
            text = await response.text()
            match = CSRF_RE.search(text)
            if match:
                self.csrf = match.group(1)
            return response.status, text, dict(response.headers)

    async def post(self, path: str, data: dict[str, str] | None = None) -> tuple[int, str, dict[str, str]]:
        form = {"_csrf": self.csrf, **(data or {})}
        async with self.session.post(self.base + path, data=form, allow_redirects=False) as response:
            return response.status, await response.text(), dict(response.headers)

    async def close(self) -> None:
        await self.session.close()


def make_markers() -> dict[str, str]:
    """Unique, greppable markers for every piece of text a visitor or counsellor types."""
    tag = secrets.token_hex(4)
    kinds = ("nick_a", "nick_b", "visitor_a", "visitor_a2", "staff_carla", "note", "transfer_reason",
             "staff_dirk", "staff_line", "visitor_b", "visitor_b_resumed", "wrapup")
    return {kind: f"MRK{tag}{kind.replace('_', '')}Z" for kind in kinds}


async def login(server: Server, name: str) -> Browser:
    staff = Browser(server.staff)
    await staff.get("/login")
    status, _, _ = await staff.post("/login", {"username": name, "password": PASSWORD})
    assert status == 303, f"login of {name} failed"
    await staff.get("/")
    return staff


async def cid_from(staff: Browser) -> str:
    """The id of the first chat in the waiting line on the counsellor's board."""
    _, board, _ = await staff.get("/board")
    match = re.search(r'action="/accept/([A-Za-z0-9_-]+)"', board)
    assert match, "no waiting chat on the board"
    return match.group(1)


async def wrap_up(staff: Browser, cid: str, marker: str) -> None:
    """Fill the wrap-up form if the statistics helper has shipped it (else the 404 is the answer)."""
    status, page, _ = await staff.get(f"/wrapup/{cid}")
    if status != 200:
        return
    fields: dict[str, str] = {}
    for name, value in re.findall(r'<input[^>]*type="radio"[^>]*name="([^"]+)"[^>]*value="([^"]*)"', page):
        fields.setdefault(name, value)
    for name, first in re.findall(r'<select[^>]*name="([^"]+)"[^>]*>\s*<option[^>]*value="([^"]*)"', page):
        fields.setdefault(name, first)
    for name in re.findall(r'<(?:textarea|input)[^>]*name="([^"]+)"[^>]*(?:type="text")?', page):
        if name != "_csrf":
            fields.setdefault(name, marker)
    action = re.search(r'<form[^>]*method="post"[^>]*action="([^"]+)"', page)
    await staff.post(action.group(1) if action else f"/wrapup/{cid}", fields)


async def scenario(server: Server, m: dict[str, str]) -> list[str]:
    """Chat, urgent, note, staff line, transfer, end, wrap-up, resume, quick exit; returns passphrases."""
    a, b = Browser(server.visitor), Browser(server.visitor)
    browsers = [a, b]
    try:
        carla = await login(server, "carla")
        dirk = await login(server, "dirk")
        sam = await login(server, "sam")
        browsers += [carla, dirk, sam]
        await a.get("/")
        assert (await a.post("/start", {"nickname": m["nick_a"]}))[0] == 303
        _, page, _ = await a.get("/chat")
        passphrases = WORDS_RE.findall(page)
        await a.get("/chat/compose")
        assert (await a.post("/chat/send", {"text": m["visitor_a"]}))[0] == 303
        assert (await a.post("/chat/urgent"))[0] == 303
        cid = await cid_from(carla)
        assert (await carla.post(f"/accept/{cid}"))[0] == 303
        await carla.get(f"/chat/{cid}/compose")
        assert (await carla.post(f"/chat/{cid}/send", {"text": m["staff_carla"], "action": "send"}))[0] == 303
        assert (await carla.post(f"/chat/{cid}/note", {"note": m["note"], "kind": "note"}))[0] == 303
        await sam.get(f"/supervise/{cid}/line")
        assert (await sam.post(f"/chat/{cid}/note", {"note": m["staff_line"], "kind": "staff_line",
                                                     "back": "line"}))[0] == 303
        _, frame, _ = await a.get("/chat/messages")
        assert m["staff_carla"] in frame and m["note"] not in frame
        assert (await a.post("/chat/send", {"text": m["visitor_a2"]}))[0] == 303
        await carla.get(f"/chat/{cid}")
        status, _, _ = await carla.post(f"/chat/{cid}/transfer", {"to": "dirk", "reason": m["transfer_reason"]})
        assert status == 303
        await dirk.get(f"/chat/{cid}/compose")
        assert (await dirk.post(f"/chat/{cid}/send", {"text": m["staff_dirk"], "action": "send"}))[0] == 303
        _, staff_view, _ = await dirk.get(f"/chat/{cid}/messages")
        assert m["visitor_a2"] in staff_view and m["transfer_reason"] in staff_view
        assert (await dirk.post(f"/chat/{cid}/end"))[0] == 303
        await wrap_up(dirk, cid, m["wrapup"])
        _, frame, _ = await a.get("/chat/messages")
        assert m["visitor_a"] not in frame, "an ended chat is wiped"

        await b.get("/")
        assert (await b.post("/start", {"nickname": m["nick_b"]}))[0] == 303
        _, page, _ = await b.get("/chat")
        passphrases += WORDS_RE.findall(page)
        await b.get("/chat/compose")
        assert (await b.post("/chat/send", {"text": m["visitor_b"]}))[0] == 303
        await b.close()  # Tor Browser closed: a new browser resumes with the passphrase
        b = Browser(server.visitor)
        browsers.append(b)
        await b.get("/")
        assert (await b.post("/resume", {"passphrase": passphrases[-1]}))[0] == 303
        await b.get("/chat/compose")
        assert (await b.post("/chat/send", {"text": m["visitor_b_resumed"]}))[0] == 303
        _, frame, _ = await b.get("/chat/messages")
        assert m["visitor_b"] in frame and m["visitor_b_resumed"] in frame
        await b.get("/no/such/page")
        status, _, headers = await b.get("/exit")
        assert status == 303 and "Location" in headers
        await a.get("/exit")
        for staff in (carla, dirk, sam):
            await staff.post("/logout")
    finally:
        for browser in browsers:
            await browser.close()
    assert len(passphrases) == 2
    return passphrases


def files_under(*roots: Path) -> list[Path]:
    return [p for root in roots for p in root.rglob("*") if p.is_file()]


def assert_nothing_kept(server: Server, needles: list[str]) -> None:
    """No marker or passphrase in the log or any file of data dir, cwd, TMPDIR; no spoofed value logged."""
    log = server.log
    assert "visitor:" in log and "DEBUG" in log, "the server really logged at DEBUG"
    for needle in [*needles, *SPOOF.values()]:
        assert needle not in log, f"{needle!r} reached the log"
    files = files_under(server.data_dir, server.cwd, server.tmpdir, server.home)
    assert any(p.name == "accounts.json" for p in files), "the scan sees the data directory"
    for path in files:
        if path == server.trace_path:
            continue
        content = path.read_bytes()
        for needle in needles:
            assert needle.encode() not in content, f"{needle!r} was written to {path}"
    assert not any(server.tmpdir.iterdir()), "nothing is left in the server's TMPDIR"


def passphrase_forms(passphrase: str) -> list[str]:
    """The passphrase as shown and as normalised (no dashes), both must stay unwritten."""
    return [passphrase, passphrase.replace("-", "")]


async def test_no_marker_reaches_a_log_or_a_file(tmp_path: Path) -> None:
    markers = make_markers()
    with private_server(tmp_path) as server:
        passphrases = await scenario(server, markers)
    needles = list(markers.values()) + [f for p in passphrases for f in passphrase_forms(p)]
    assert_nothing_kept(server, needles)
    assert "stopping" in server.log


# One strace line: pid, syscall, fd with its path from -y, then the data argument.
WRITE_RE = re.compile(r"^(\d+)\s+(write|writev|pwrite64|pwritev2?|sendto|sendmsg)\((\d+)<([^>]*)>, (.*)$")
OPEN_RE = re.compile(r'^(\d+)\s+openat\([^,]+, "([^"]+)", ([A-Z_|]+)')
TRANSPORTS = ("socket:", "pipe:", "/dev/pts/", "/dev/tty", "anon_inode:", "/dev/null")


@dataclass
class Trace:
    """What strace saw: writes per fd kind, and files opened for writing."""

    lines: list[str]

    def writes(self) -> list[tuple[str, str]]:
        """(fd path, data) of every write call."""
        out = []
        for line in self.lines:
            match = WRITE_RE.match(line)
            if match:
                out.append((match.group(4), match.group(5)))
        return out

    def opened_for_writing(self) -> set[str]:
        out = set()
        for line in self.lines:
            match = OPEN_RE.match(line)
            if match and any(flag in match.group(3) for flag in ("O_WRONLY", "O_RDWR", "O_CREAT")):
                out.add(match.group(2))
        return out


@pytest.mark.skipif(shutil.which("strace") is None, reason="needs Debian's strace (.ci/run installs it)")
async def test_under_strace_only_sockets_and_pipes_carry_markers(tmp_path: Path) -> None:
    markers = make_markers()
    with private_server(tmp_path, trace=True) as server:
        limits = Path(f"/proc/{server.pid}/limits").read_text()
        core = next(line for line in limits.splitlines() if line.startswith("Max core file size"))
        assert core.split()[4:6] == ["0", "0"], f"core dumps must be off in the live server: {core}"
        passphrases = await scenario(server, markers)
    assert server.trace_path is not None
    trace = Trace(server.trace_path.read_text(encoding="utf-8", errors="replace").splitlines())
    needles = list(markers.values()) + [f for p in passphrases for f in passphrase_forms(p)]
    writes = trace.writes()
    socket_data = "".join(data for path, data in writes if path.startswith("socket:"))
    assert markers["staff_carla"] in socket_data, "control: strace saw the pages go out on sockets"
    files_written = {path for path, _ in writes if not path.startswith(TRANSPORTS)}
    assert str(server.log_path) in files_written, "control: strace saw the log file writes"
    for path, data in writes:
        if path.startswith(TRANSPORTS):
            continue
        for needle in needles:
            assert needle not in data, f"{needle!r} written to {path}"
    # Files opened for writing: only the data directory (atomic temp files) and the log.
    data_dir = str(server.data_dir.resolve())
    unexpected = {p for p in trace.opened_for_writing()
                  if not p.startswith(data_dir) and p != str(server.log_path) and not p.startswith("/dev/")
                  and "__pycache__" not in p}
    assert not unexpected, f"files opened for writing outside the data directory: {unexpected}"
    # The live process made itself non-dumpable (no core, no ptrace by other users).
    server_lines = [line for line in trace.lines if line.startswith(f"{server.pid} ")]
    assert any(re.search(r"prctl\(PR_SET_DUMPABLE, (0|SUID_DUMP_DISABLE)\) = 0", line) for line in server_lines)
    assert any(re.search(r"(prlimit64\(0, RLIMIT_CORE, \{rlim_cur=0, rlim_max=0\}|setrlimit\(RLIMIT_CORE, "
                         r"\{rlim_cur=0, rlim_max=0\}).* = 0", line) for line in server_lines)
    assert_nothing_kept(server, needles)
