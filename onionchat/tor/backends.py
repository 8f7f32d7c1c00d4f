"""Ways to reach tor: a running tor's control port or socket, or a tor of our own."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import stem
import stem.connection
import stem.control
import stem.response

from onionchat import storage
from onionchat.config import Config
from onionchat.errors import (
    TorError,
    TorMissing,
)
from onionchat.tor.control import ControllerLike, Progress, authenticate, connect_port, connect_socket, wait_bootstrap

log = logging.getLogger("onionchat.tor")

TOR_DIR = "tor"
SOCKET_PATH_MAX = 100  # AF_UNIX paths are limited to 108 bytes
_INSTALL_HINT = ("install it with 'apt-get install tor', or run without Tor (local only) with "
                 "'onionchat serve --local'")


OnConnect = Callable[[ControllerLike], None]  # called once authenticated, before the bootstrap wait


class Backend(Protocol):
    """One way of reaching tor: connect() gives an authenticated, bootstrapped controller."""

    def connect(self, stop: threading.Event, progress: Progress | None,
                on_connect: OnConnect | None = None) -> ControllerLike:
        """An authenticated controller of a bootstrapped tor (launching it if it is ours)."""

    def healthy(self) -> bool:
        """False when a tor we launched has died."""

    def shutdown(self) -> None:
        """Stop a tor we launched."""


class ControlBackend:
    """tor.mode = "control": a tor somebody else runs (Debian's system tor)."""

    def __init__(self, config: Config) -> None:
        self.config = config

    def connect(self, stop: threading.Event, progress: Progress | None,
                on_connect: OnConnect | None = None) -> ControllerLike:
        """Connect, authenticate, wait for bootstrap."""
        tor = self.config.tor
        if tor.control_socket:
            controller, where = connect_socket(Path(tor.control_socket)), tor.control_socket
        else:
            controller, where = connect_port(tor.control_port), f"127.0.0.1:{tor.control_port}"
        authenticate(controller, tor.control_password, where)
        try:
            if on_connect is not None:
                on_connect(controller)
            wait_bootstrap(controller, tor.bootstrap_timeout, stop, progress)
        except BaseException:
            controller.close()
            raise
        result: ControllerLike = controller
        return result

    def healthy(self) -> bool:
        """We cannot see the system tor's process: the controller's liveness says it all."""
        return True

    def shutdown(self) -> None:
        """The system tor is not ours to stop."""


class LaunchBackend:
    """tor.mode = "launch": a tor of our own, stopped when we stop (and if we die)."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.directory = config.data_dir / TOR_DIR
        self.proc: subprocess.Popen[bytes] | None = None
        self.output: deque[str] = deque(maxlen=15)  # tor's last lines, for error messages
        self._reader: threading.Thread | None = None
        self.services: list[str] = []  # the onion services' torrc lines (tor/hsdir.py), set before connect()

    def supports_pow(self) -> bool:
        """Whether this tor has the proof-of-work module (a tor without it refuses the option)."""
        binary = shutil.which(self.config.tor.tor_binary)
        if binary is None:
            return False
        try:
            listed = subprocess.run([binary, "--list-modules"], capture_output=True, text=True, timeout=30,  # noqa: S603
                                    check=False)
        except (OSError, subprocess.TimeoutExpired):
            return False
        return re.search(r"^pow: yes$", listed.stdout, re.MULTILINE) is not None

    def torrc(self) -> str:
        """Our torrc: only what we need, then the admin's extra lines (bridges, test networks)."""
        d = self.directory
        control = (f"ControlSocket {d / 'control'}" if len(str(d / "control")) < SOCKET_PATH_MAX
                   else f"ControlPort 127.0.0.1:auto\nControlPortWriteToFile {d / 'control.port'}")
        lines = [
            "# Written by onionchat at every start; put your own lines in tor.extra_torrc instead.",
            f"DataDirectory {d}",
            control,
            "CookieAuthentication 1",
            "SocksPort 0",  # we only host onions; no client port for anyone to use
            f"PidFile {d / 'tor.pid'}",
            "Log notice stdout",
            "SafeLogging 1",
            "AvoidDiskWrites 1",
            # tor exits by itself if onionchat dies without stopping it.
            f"__OwningControllerProcess {os.getpid()}",
            *self.services,
        ]
        for line in self.config.tor.extra_torrc:
            if "\n" in line or "\r" in line:
                raise TorError("tor.extra_torrc: one torrc line per list entry, without line breaks")
            lines.append(line)
        return "\n".join(lines) + "\n"

    def _read_output(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        with proc.stdout:  # closed at tor's exit (EOF), by this thread
            for raw in proc.stdout:
                line = raw.decode("utf-8", "replace").rstrip()
                self.output.append(line)
                if "[warn]" in line or "[err]" in line:
                    log.warning("tor: %s", line.split("] ", 1)[-1])
                else:
                    log.debug("tor: %s", line)

    def _control_path(self) -> Path:
        return self.directory / "control"

    def _wait_for_control(self, proc: subprocess.Popen[bytes], stop: threading.Event) -> Any:
        deadline = time.monotonic() + 60
        port_file = self.directory / "control.port"
        uses_socket = len(str(self._control_path())) < SOCKET_PATH_MAX
        while time.monotonic() < deadline and not stop.is_set():
            if proc.poll() is not None:
                if self._reader is not None:
                    self._reader.join(5)  # tor's last words, up to EOF
                last = " / ".join(line.split("] ", 1)[-1] for line in list(self.output)[-3:])
                raise TorError(f"tor exited at start (code {proc.returncode}): {last}")
            # The socket file (or port file) can exist a moment before tor accepts on it: a
            # refused connection then is no failure, only too early.
            with contextlib.suppress(stem.SocketError):
                if uses_socket and self._control_path().exists():
                    return stem.control.Controller.from_socket_file(str(self._control_path()))
                if not uses_socket and port_file.exists():
                    text = port_file.read_text()
                    match = re.search(r"PORT=127\.0\.0\.1:(\d+)", text)
                    if match:
                        return stem.control.Controller.from_port(address="127.0.0.1", port=int(match.group(1)))
            stop.wait(0.1)
        raise TorError("tor did not open its control socket within 60 s")

    def connect(self, stop: threading.Event, progress: Progress | None,
                on_connect: OnConnect | None = None) -> ControllerLike:
        """Start tor (stopping an older one of ours first), authenticate, wait for bootstrap."""
        binary = shutil.which(self.config.tor.tor_binary)
        if binary is None:
            raise TorMissing(f"tor is not installed (no '{self.config.tor.tor_binary}' on PATH): {_INSTALL_HINT}")
        self.shutdown()
        storage.ensure_dir(self.directory)
        storage.write_atomic(self.directory / "torrc", self.torrc().encode("utf-8"))
        defaults = self.directory / "torrc-defaults"
        if not defaults.exists():
            storage.write_atomic(defaults, b"")  # keep a system-wide torrc-defaults out of our tor
        for stale in (self._control_path(), self.directory / "control.port"):
            stale.unlink(missing_ok=True)
        try:
            # A session of its own: Ctrl-C in the terminal reaches onionchat, which then
            # withdraws the onions and stops tor in order, instead of tor dying underneath.
            command = [binary, "-f", str(self.directory / "torrc"), "--defaults-torrc", str(defaults)]
            proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,  # noqa: S603 - no shell
                                    stderr=subprocess.STDOUT, start_new_session=True)
        except OSError as exc:
            raise TorMissing(f"cannot run {binary}: {exc.strerror}; {_INSTALL_HINT}") from None
        self.proc = proc
        self.output.clear()
        self._reader = threading.Thread(target=self._read_output, args=(proc,), name="tor-output", daemon=True)
        self._reader.start()
        controller = None
        try:
            controller = self._wait_for_control(proc, stop)
            authenticate(controller, "", str(self.directory))
            if on_connect is not None:
                on_connect(controller)
            wait_bootstrap(controller, self.config.tor.bootstrap_timeout, stop, progress)
        except BaseException:
            if controller is not None:
                controller.close()
            self.shutdown()
            raise
        result: ControllerLike = controller
        return result

    def healthy(self) -> bool:
        """Whether our tor is still running."""
        return self.proc is not None and self.proc.poll() is None

    def shutdown(self) -> None:
        """Stop our tor by its PID: TERM, then KILL if it lingers."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        if self._reader is not None:
            self._reader.join(5)  # it closes tor's output pipe at EOF
            self._reader = None


def make_backend(config: Config) -> Backend:
    """The Backend for tor.mode (launch or control)."""
    if config.tor.mode == "control":
        return ControlBackend(config)
    return LaunchBackend(config)
