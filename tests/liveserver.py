"""A real ``onionchat serve --local`` in a subprocess, and a neutral page server, for end-to-end tests."""

from __future__ import annotations

import contextlib
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp

LOOPBACK = "127.0.0.1"
# Linux takes outgoing source ports from 32768-60999 (/proc/sys/net/ipv4/ip_local_port_range):
# a port picked there can be grabbed by any outgoing connection before we bind it.
PORT_LO, PORT_HI = 20000, 32767
# Accounts created here use this password unless told otherwise (long enough for password_min).
PASSWORD = "correct horse battery staple 42"
NO_CIRCUIT_BUDGETS: dict[str, Any] = {"sessions": 1_000_000, "chats": 100_000, "resumes": 100_000,
                                      "connections": 100_000, "requests_per_second": 100_000}
_URL_LINE = re.compile(r"^(visitor|staff):\s+(http://\S+)$", re.MULTILINE)
_used_ports: set[int] = set()
_ports_lock = threading.Lock()


def free_port() -> int:
    """A loopback port below the ephemeral range that binds now and was not handed out before."""
    rng = random.SystemRandom()
    with _ports_lock:
        for _ in range(500):
            port = rng.randrange(PORT_LO, PORT_HI + 1)
            if port in _used_ports:
                continue
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
                try:
                    probe.bind((LOOPBACK, port))
                except OSError:
                    continue
            _used_ports.add(port)
            return port
    raise RuntimeError(f"no free loopback port in {PORT_LO}-{PORT_HI}")


def wait_until(condition: Callable[[], bool], timeout: float, what: str, *, step: float = 0.02) -> None:
    """Poll ``condition`` until it holds; TimeoutError naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not happen within {timeout} s")
        time.sleep(step)


def fetch(url: str, timeout: float = 5.0) -> tuple[int, dict[str, str], bytes]:
    """GET ``url`` (loopback only, no proxy, no redirects followed): status, headers, body."""
    if not url.startswith(f"http://{LOOPBACK}:"):
        raise ValueError(f"refusing to contact {url}: tests talk to {LOOPBACK} only")

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    # No proxy from the environment: only 127.0.0.1 is ever contacted.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), NoRedirect())
    try:
        with opener.open(url, timeout=timeout) as response:
            return response.status, dict(response.headers.items()), response.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, dict(exc.headers.items()), exc.read()


def proxy_line(circuit: int) -> bytes:
    """The line tor writes first on each connection of circuit ``circuit`` (HiddenServiceExportCircuitID haproxy).

    Tor 0.4.9's exact format: the id in the last 32 bits of the source address, its two halves in hex.
    """
    high, low = circuit >> 16, circuit & 0xFFFF
    return f"PROXY TCP6 fc00:dead:beef:4dad::{high:x}:{low:x} ::1 {low} 80\r\n".encode()


READY_CIRCUIT = 0xFFFFFFFE  # the circuit live_server's readiness check comes on (none of a test's)


def proxied_status(url: str, circuit: int, timeout: float = 5.0) -> int:
    """The status of GET ``url`` on a connection that starts with tor's PROXY line (0: no answer)."""
    parts = urlsplit(url)
    if parts.hostname != LOOPBACK:
        raise ValueError(f"refusing to contact {url}: tests talk to {LOOPBACK} only")
    with socket.create_connection((LOOPBACK, parts.port or 80), timeout=timeout) as sock:
        sock.sendall(proxy_line(circuit) + f"GET {parts.path or '/'} HTTP/1.1\r\nHost: onion\r\n\r\n".encode())
        line = sock.makefile("rb").readline()
    fields = line.split()
    return int(fields[1]) if len(fields) > 1 and fields[1].isdigit() else 0


def toml_value(value: Any) -> str:
    """One TOML value (text, whole number, true/false, list of those)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(f"no TOML form for {value!r}")


def onionchat_command() -> list[str]:
    """The installed console script beside this Python, else ``python -m onionchat``."""
    script = shutil.which("onionchat", path=str(Path(sys.executable).parent))
    return [script] if script else [sys.executable, "-m", "onionchat"]


@dataclass
class LiveServer:
    """A running ``onionchat serve --local``: its two URLs, its data directory and its output."""

    visitor_url: str
    staff_url: str
    data_dir: Path
    config_path: Path
    log_path: Path
    process: subprocess.Popen[bytes]
    accounts: dict[str, str] = field(default_factory=dict)  # name -> password

    @property
    def visitor_port(self) -> int:
        """The visitor site's port on 127.0.0.1 (for raw connections)."""
        return urlsplit(self.visitor_url).port or 80

    @property
    def log(self) -> str:
        """Everything the server printed so far (stdout and stderr together)."""
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM, wait for the exit, and return the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                raise AssertionError(f"onionchat did not stop within {timeout} s of SIGTERM:\n{self.log}") from None
        return self.process.returncode


def write_config(path: Path, settings: Mapping[str, Mapping[str, Any]]) -> None:
    """An onionchat.toml with the given ``{section: {name: value}}`` settings."""
    lines: list[str] = []
    for section, values in settings.items():
        lines.append(f"[{section}]")
        lines.extend(f"{name} = {toml_value(value)}" for name, value in values.items())
        lines.append("")
    path.write_text("\n".join(lines), encoding="utf-8")


def merged(base: Mapping[str, Mapping[str, Any]],
           extra: Mapping[str, Mapping[str, Any]] | None) -> dict[str, dict[str, Any]]:
    """``base`` with ``extra`` laid over it, section by section."""
    out = {section: dict(values) for section, values in base.items()}
    for section, values in (extra or {}).items():
        out.setdefault(section, {}).update(values)
    return out


def child_env(home: Path) -> dict[str, str]:
    """The environment of onionchat's processes: no config from elsewhere, no proxy."""
    env = {k: v for k, v in os.environ.items() if k != "ONIONCHAT_CONFIG" and not k.lower().endswith("_proxy")}
    env["XDG_DATA_HOME"] = str(home / "xdg")  # even a missed --config cannot reach the real one
    env["PYTHONUNBUFFERED"] = "1"
    return env


def add_staff(config_path: Path, name: str, role: str, password: str, env: dict[str, str]) -> None:
    """Create an account exactly as an administrator does, through the CLI."""
    result = subprocess.run(
        [*onionchat_command(), "staff", "add", name, "--role", role, "--password-stdin",
         "--config", str(config_path)],
        input=f"{password}\n".encode(), capture_output=True, env=env, cwd=config_path.parent, timeout=60,
        check=False)
    if result.returncode != 0:
        raise AssertionError(f"'onionchat staff add {name}' failed ({result.returncode}): "
                             f"{result.stderr.decode(errors='replace')}")


@contextlib.contextmanager
def live_server(tmp: Path, settings: Mapping[str, Mapping[str, Any]] | None = None,
                staff: Mapping[str, str] | None = None, *, password: str = PASSWORD,
                start_timeout: float = 30.0) -> Iterator[LiveServer]:
    """Run onionchat on free loopback ports with a temp data dir until the block ends.

    ``settings`` are extra config settings as ``{"poll": {"hold_seconds": 5}}``; ``staff``
    maps account names to roles (all get ``password``). On leaving, the server gets SIGTERM
    and must exit with status 0 and no traceback.
    """
    home = tmp / "onionchat-live"
    data_dir = home / "data"
    data_dir.mkdir(parents=True, mode=0o700)
    config_path = data_dir / "onionchat.toml"
    base = {"server": {"visitor_host": LOOPBACK, "visitor_port": free_port(),
                       "staff_host": LOOPBACK, "staff_port": free_port(), "data_dir": str(data_dir)},
            # Without Tor every browser of a test is the one circuit "local": tests of other
            # things must not run into its budgets (tests/test_circuits_live.py sets its own).
            "circuits": dict(NO_CIRCUIT_BUDGETS)}
    write_config(config_path, merged(base, settings))
    env = child_env(home)
    for name, role in (staff or {}).items():
        add_staff(config_path, name, role, password, env)

    log_path = home / "serve.log"
    with log_path.open("wb") as log_file:
        # Output goes to a file rather than a pipe: nobody has to drain it while tests run.
        process = subprocess.Popen([*onionchat_command(), "serve", "--local", "--config", str(config_path)],
                                   stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
                                   env=env, cwd=home)
    server = LiveServer(visitor_url="", staff_url="", data_dir=data_dir, config_path=config_path,
                        log_path=log_path, process=process,
                        accounts=dict.fromkeys(staff or {}, password))
    try:
        def announced() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"onionchat serve exited with {process.returncode}:\n{server.log}")
            urls = dict(_URL_LINE.findall(server.log))
            server.visitor_url, server.staff_url = urls.get("visitor", ""), urls.get("staff", "")
            return bool(server.visitor_url and server.staff_url)

        wait_until(announced, start_timeout, "printing the visitor and staff URLs")

        proxied = merged(base, settings)["server"].get("proxy_protocol") == "on"

        def answering() -> bool:
            try:
                if proxied:  # every connection must start with tor's PROXY line
                    return (proxied_status(server.visitor_url, READY_CIRCUIT) == 200
                            and proxied_status(server.staff_url + "login", READY_CIRCUIT) == 200)
                return (fetch(server.visitor_url, 2.0)[0] == 200
                        and fetch(server.staff_url + "login", 2.0)[0] == 200)
            except OSError:
                return False

        wait_until(answering, start_timeout, "both sites answering")
        yield server
    finally:
        code = server.stop()
    assert code == 0, f"onionchat serve exited with {code} after SIGTERM:\n{server.log}"
    assert "Traceback" not in server.log, f"onionchat serve printed a traceback:\n{server.log}"


async def visitor_in_chat(server: LiveServer, nickname: str) -> str:
    """A visitor who pressed Start chat, as a browser does it; their Cookie header."""
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
        async with browser.get(server.visitor_url) as response:
            token = re.search(r'name="_csrf" value="([^"]+)"', await response.text())
        assert token is not None
        async with browser.post(server.visitor_url + "start",
                                data={"_csrf": token.group(1), "nickname": nickname}) as response:
            assert response.status == 200  # followed the redirect to the chat page
        return "; ".join(f"{c.key}={c.value}" for c in browser.cookie_jar)


async def next_frame_url(server: LiveServer, cookie: str) -> str:
    """The visitor's messages frame now; the URL its Refresh asks for next (held until a change)."""
    async with aiohttp.ClientSession() as browser, \
            browser.get(server.visitor_url + "chat/messages", headers={"Cookie": cookie}) as response:
        return response.headers["Refresh"].split("url=", 1)[1].split("#")[0]


class NeutralPage:
    """A tiny static site on 127.0.0.1 standing in for Quick exit's harmless page."""

    TITLE = "Weather today"
    BODY = (b"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>Weather today</title></head>"
            b"<body><h1>Weather today</h1><p>Mild, light wind from the west.</p></body></html>")

    def __init__(self) -> None:
        body = self.BODY

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: test output shows only what matters."""

        self._server = ThreadingHTTPServer((LOOPBACK, free_port()), Handler)
        self._server.daemon_threads = True
        self.url = f"http://{LOOPBACK}:{self._server.server_address[1]}/"
        self._thread = threading.Thread(target=self._server.serve_forever, name="neutral-page", daemon=True)

    def __enter__(self) -> NeutralPage:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
