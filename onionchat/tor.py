"""Publish the visitor and staff sites as Tor onion services via stem (launch, control or torrc mode).

Interface for the server (all of stem runs in worker threads, never on the event loop)::

    handle = await start_tor(config, visitor_port, staff_port, progress=progress_printer(sys.stderr))
    print(handle.addresses.visitor, handle.addresses.staff)   # "xxxx.onion"
    ...
    await handle.close()   # removes both onions, stops a tor we launched

Modes (``tor.mode``):

- ``launch``: start our own tor (DataDirectory ``<data_dir>/tor``, cookie-authenticated
  control socket, ``SocksPort 0``, ``tor.extra_torrc`` appended) and stop it on close.
- ``control``: attach to a running tor (Debian: ``/run/tor/control``, group ``debian-tor``).
- ``torrc``: tor publishes through ``HiddenServiceDir`` (torrc.example); we only read the
  ``hostname`` files. No watchdog, no client-key management by onionchat.

In launch and control mode the visitor onion (port 80 -> the visitor site) is public and
the staff onion (port 80 -> the staff site) requires Tor v3 client authorization for every
key in ``<data_dir>/onion/staff-clients.json`` (see onionkeys.py for the files to back up).
A watchdog thread relaunches/reconnects and republishes the same addresses when tor or the
control connection goes away, and republishes the staff onion when the key file changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import re
import shutil
import socket
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol

import stem
import stem.connection
import stem.control
import stem.response

from onionchat import storage
from onionchat.config import Config
from onionchat.errors import (
    StorageError,
    TorAuthError,
    TorBootstrapTimeout,
    TorError,
    TorMissing,
    TorPermissionDenied,
    TorPublishError,
)
from onionchat.onionkeys import OnionKey, ServiceKeys, StaffClientKeys, service_keys

log = logging.getLogger("onionchat.tor")

Progress = Callable[[int, str], None]

TOR_DIR = "tor"
WATCH_INTERVAL = 0.5  # seconds between watchdog checks
PUBLISH_TIMEOUT = 90.0  # wait this long for a first descriptor upload before going on anyway
SOCKET_PATH_MAX = 100  # AF_UNIX paths are limited to 108 bytes
_BOOTSTRAP_RE = re.compile(r'PROGRESS=(\d+).*?SUMMARY="([^"]*)"')
_INSTALL_HINT = ("install it with 'apt-get install tor', or run without Tor (local only) with "
                 "'onionchat serve --local'")


@dataclass(frozen=True)
class OnionAddresses:
    """Both onion addresses, each "xxxx.onion"."""

    visitor: str
    staff: str


class ControllerLike(Protocol):
    """The part of stem's Controller we use (a fake one stands in for it in unit tests)."""

    def msg(self, message: str) -> Any:
        """Send a raw control command; returns the reply (a stem ControlMessage)."""

    def is_alive(self) -> bool:
        """Whether the control connection is still open."""

    def close(self) -> None:
        """Close the control connection."""

    def get_info(self, param: str) -> Any:
        """GETINFO ``param``."""

    def add_event_listener(self, listener: Callable[[Any], None], *events: Any) -> None:
        """Subscribe ``listener`` to ``events``."""

    def remove_event_listener(self, listener: Callable[[Any], None]) -> None:
        """Unsubscribe ``listener``."""


class Backend(Protocol):
    """One way of reaching tor: connect() gives an authenticated, bootstrapped controller."""

    def connect(self, stop: threading.Event, progress: Progress | None) -> ControllerLike:
        """An authenticated controller of a bootstrapped tor (launching it if it is ours)."""

    def healthy(self) -> bool:
        """False when a tor we launched has died."""

    def shutdown(self) -> None:
        """Stop a tor we launched."""


# -- talking to a controller -------------------------------------------------------------


def wait_bootstrap(controller: ControllerLike, timeout: float, stop: threading.Event,
                   progress: Progress | None) -> None:
    """Poll tor's bootstrap phase until 100%, reporting each new step to ``progress``."""
    deadline = time.monotonic() + timeout
    last = (-1, "")
    while True:
        phase = str(controller.get_info("status/bootstrap-phase"))
        match = _BOOTSTRAP_RE.search(phase)
        percent, summary = (int(match.group(1)), match.group(2)) if match else (0, "Starting")
        if (percent, summary) != last:
            last = (percent, summary)
            if progress is not None:
                progress(percent, summary)
            log.debug("tor bootstrap %d%%: %s", percent, summary)
        if percent >= 100:
            return
        if stop.is_set():
            raise TorError("stopped while tor was bootstrapping")
        if time.monotonic() > deadline:
            raise TorBootstrapTimeout(
                f"tor did not finish bootstrapping within {timeout:.0f} s (stuck at {percent}%: {summary}); "
                "check the network connection, or configure bridges in tor.extra_torrc")
        stop.wait(0.25)


def _reply_text(response: Any) -> str:
    return " ".join(str(response).split())


def _reply_code(response: Any) -> str:
    try:
        return str(response.content()[0][0])
    except (IndexError, AttributeError):
        return ""


def add_onion_command(key: OnionKey, target: str, clients: list[str], *, pow_defense: bool,
                      max_streams: int) -> str:
    """The raw ADD_ONION line: stem has no argument for PoW nor for several ClientAuthV3 keys."""
    flags = ["DiscardPK"]
    if clients:
        flags.append("V3Auth")
    if max_streams:
        # Closing the circuit of a client that opens too many streams is tor's advice against floods.
        flags.append("MaxStreamsCloseCircuit")
    parts = [f"ADD_ONION {key.key}", "Flags=" + ",".join(flags)]
    if max_streams:
        parts.append(f"MaxStreams={max_streams}")
    if pow_defense:
        parts.append("PoWDefensesEnabled=1")
    parts.append(f"Port=80,{target}")
    parts += [f"ClientAuthV3={public}" for public in clients]
    return " ".join(parts)


def add_onion(controller: ControllerLike, name: str, key: OnionKey, target: str, clients: list[str], *,
              pow_defense: bool, max_streams: int) -> bool:
    """Publish one onion; returns whether PoW is on. Falls back without PoW if tor refuses it."""
    response = controller.msg(add_onion_command(key, target, clients, pow_defense=pow_defense,
                                                max_streams=max_streams))
    pow_on = pow_defense
    if pow_defense and not response.is_ok():
        refusal = _reply_text(response)
        response = controller.msg(add_onion_command(key, target, clients, pow_defense=False,
                                                    max_streams=max_streams))
        if response.is_ok():
            log.warning("this tor does not support the proof-of-work defence (it answered: %s); the %s "
                        "onion is published without it (tor 0.4.9.2 or newer with the pow module has it)",
                        refusal, name)
            pow_on = False
    if not response.is_ok():
        raise TorPublishError(f"tor refused to publish the {name} onion: {_reply_text(response)}")
    try:
        stem.response.convert("ADD_ONION", response)
    except stem.ProtocolError as exc:
        raise TorPublishError(f"tor gave an unexpected answer publishing the {name} onion: {exc}") from None
    if response.service_id != key.service_id:
        raise TorPublishError(f"tor derived {response.service_id}.onion from the {name} key, which says "
                              f"{key.address}: the key file is damaged")
    return pow_on


def del_onion(controller: ControllerLike, key: OnionKey) -> None:
    """Withdraw an onion; one that is not published is fine."""
    response = controller.msg(f"DEL_ONION {key.service_id}")
    if not response.is_ok() and _reply_code(response) != "552":
        raise TorError(f"tor refused to remove {key.address}: {_reply_text(response)}")


class _UploadWatch:
    """Collects HS_DESC events so we can wait for each service's first descriptor upload."""

    def __init__(self) -> None:
        self.events: queue.Queue[Any] = queue.Queue()

    def __call__(self, event: Any) -> None:
        self.events.put(event)

    def wait(self, service_ids: set[str], timeout: float, stop: threading.Event) -> set[str]:
        """Wait until every id in ``service_ids`` was uploaded once; returns those still missing."""
        directories: dict[str, str] = {}  # HSDir fingerprint -> service id being uploaded there
        missing = set(service_ids)
        deadline = time.monotonic() + timeout
        while missing and not stop.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                event = self.events.get(timeout=min(remaining, 0.5))
            except queue.Empty:
                continue
            action = getattr(event, "action", None)
            address = str(getattr(event, "address", ""))
            directory = str(getattr(event, "directory_fingerprint", ""))
            if action == stem.HSDescAction.UPLOAD and address in missing:
                directories[directory] = address
            elif action == stem.HSDescAction.UPLOADED:
                # tor may say UNKNOWN for the address of an UPLOADED event: match by directory.
                missing.discard(address if address in missing else directories.get(directory, ""))
        return missing


# -- ways to reach tor ---------------------------------------------------------------------


def _connect_port(port: int) -> Any:
    try:
        return stem.control.Controller.from_port(address="127.0.0.1", port=port)
    except stem.SocketError as exc:
        raise TorError(f"nothing answers on tor's control port 127.0.0.1:{port} ({exc}): is tor running "
                       "with that ControlPort?") from None


def _connect_socket(path: Path) -> Any:
    # A plain connect first tells 'permission denied' apart from everything else stem wraps.
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except PermissionError:
        raise TorPermissionDenied(
            f"permission denied on tor's control socket {path}: add the user running onionchat to the group "
            "debian-tor ('adduser USER debian-tor', then log in again or restart the service)") from None
    except FileNotFoundError:
        raise TorError(f"no tor control socket at {path}: is tor running ('systemctl status tor')?") from None
    except OSError as exc:
        raise TorError(f"cannot connect to tor's control socket {path}: {exc.strerror}") from None
    finally:
        probe.close()
    try:
        return stem.control.Controller.from_socket_file(str(path))
    except stem.SocketError as exc:
        raise TorError(f"cannot connect to tor's control socket {path}: {exc}") from None


def authenticate(controller: Any, password: str, where: str) -> None:
    """Authenticate (cookie or password) and translate stem's failures into one clear line."""
    try:
        stem.connection.authenticate(controller, password=password or None)
    except stem.connection.UnreadableCookieFile as exc:
        controller.close()
        raise TorPermissionDenied(
            f"cannot read tor's authentication cookie {exc.cookie_path}: add the user running onionchat to the "
            "group debian-tor ('adduser USER debian-tor', then log in again or restart the service)") from None
    except stem.connection.MissingPassword:
        controller.close()
        raise TorAuthError(f"tor at {where} wants a control password: set tor.control_password") from None
    except stem.connection.IncorrectPassword:
        controller.close()
        raise TorAuthError(f"tor at {where} refused tor.control_password") from None
    except (stem.connection.AuthenticationFailure, stem.SocketError) as exc:
        controller.close()
        raise TorAuthError(f"tor at {where} refused authentication: {exc}") from None


class ControlBackend:
    """tor.mode = "control": a tor somebody else runs (Debian's system tor)."""

    def __init__(self, config: Config) -> None:
        self.config = config

    def connect(self, stop: threading.Event, progress: Progress | None) -> ControllerLike:
        """Connect, authenticate, wait for bootstrap."""
        tor = self.config.tor
        if tor.control_socket:
            controller, where = _connect_socket(Path(tor.control_socket)), tor.control_socket
        else:
            controller, where = _connect_port(tor.control_port), f"127.0.0.1:{tor.control_port}"
        authenticate(controller, tor.control_password, where)
        try:
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

    @property
    def pid(self) -> int | None:
        """PID of the running tor we launched."""
        return self.proc.pid if self.proc is not None and self.proc.poll() is None else None

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
            if uses_socket and self._control_path().exists():
                return stem.control.Controller.from_socket_file(str(self._control_path()))
            if not uses_socket and port_file.exists():
                text = port_file.read_text()
                match = re.search(r"PORT=127\.0\.0\.1:(\d+)", text)
                if match:
                    return stem.control.Controller.from_port(address="127.0.0.1", port=int(match.group(1)))
            stop.wait(0.1)
        raise TorError("tor did not open its control socket within 60 s")

    def connect(self, stop: threading.Event, progress: Progress | None) -> ControllerLike:
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


# -- the publishing session ------------------------------------------------------------------


def _target(host: str, port: int) -> str:
    # A site listening on every interface is still reached over loopback by tor.
    if host in ("", "0.0.0.0", "::"):  # noqa: S104
        host = "127.0.0.1"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class TorSession:
    """Connection, publication and the watchdog; every method blocks: run them in threads."""

    def __init__(self, config: Config, backend: Backend, keys: ServiceKeys, visitor_port: int,
                 staff_port: int) -> None:
        self.config = config
        self.backend = backend
        self.keys = keys
        self.staff_keys = StaffClientKeys(config.data_dir)
        self.visitor_target = _target(config.server.visitor_host, visitor_port)
        self.staff_target = _target(config.server.staff_host, staff_port)
        self.stop = threading.Event()
        self._lock = threading.Lock()  # one user of the controller at a time
        self._controller: ControllerLike | None = None
        self._pow = config.tor.proof_of_work
        self._staff_published: frozenset[str] | None = None  # keys of the live staff onion
        self._staff_file: tuple[int, int] | None = None
        self._thread: threading.Thread | None = None

    @property
    def addresses(self) -> OnionAddresses:
        """Both addresses (known from the key files, published or not)."""
        return OnionAddresses(visitor=self.keys.visitor.address, staff=self.keys.staff.address)

    # publishing

    def _staff_clients(self) -> list[str] | None:
        """Keys for the staff onion: [] means no client auth; None means do not publish."""
        self._staff_file = self.staff_keys.fingerprint()
        if not self.config.tor.staff_client_auth:
            return []
        clients = sorted(set(self.staff_keys.load().values()))
        return clients or None

    def _publish_staff(self, controller: ControllerLike, clients: list[str] | None) -> None:
        if self._staff_published is not None:
            del_onion(controller, self.keys.staff)
            self._staff_published = None
        if clients is None:
            log.warning("no staff keys yet: the staff onion stays unpublished until one is added with "
                        "'onionchat staff-key add LABEL'")
            return
        if not clients:
            log.warning("tor.staff_client_auth is false: the staff onion %s is reachable by anyone who "
                        "knows its address; only the staff password protects it", self.keys.staff.address)
        self._pow = add_onion(controller, "staff", self.keys.staff, self.staff_target, clients,
                              pow_defense=self._pow, max_streams=self.config.tor.max_streams)
        self._staff_published = frozenset(clients)

    def publish(self, controller: ControllerLike) -> None:
        """Publish both onions on a fresh controller and wait for their first descriptor upload."""
        watch = _UploadWatch()
        controller.add_event_listener(watch, stem.control.EventType.HS_DESC)
        try:
            started = time.monotonic()
            self._staff_published = None  # a fresh connection or tor has none of ours
            self._pow = add_onion(controller, "visitor", self.keys.visitor, self.visitor_target, [],
                                  pow_defense=self._pow, max_streams=self.config.tor.max_streams)
            try:
                clients = self._staff_clients()
            except StorageError as exc:
                log.warning("%s; the staff onion stays unpublished until that is fixed", exc)
                clients = None
            self._publish_staff(controller, clients)
            wanted = {self.keys.visitor.service_id}
            if self._staff_published is not None:
                wanted.add(self.keys.staff.service_id)
            missing = watch.wait(wanted, PUBLISH_TIMEOUT, self.stop)
            if missing and not self.stop.is_set():
                log.warning("tor has not confirmed a descriptor upload for %s yet; it keeps trying",
                            ", ".join(sorted(m + ".onion" for m in missing)))
            log.info("onion services published in %.1f s (proof-of-work %s)", time.monotonic() - started,
                     "on" if self._pow else "off")
        finally:
            controller.remove_event_listener(watch)

    def start(self, progress: Progress | None) -> None:
        """Connect (launching tor if ours) and publish; raises TorError subclasses."""
        with self._lock:
            controller = self.backend.connect(self.stop, progress)
            self._controller = controller
            self.publish(controller)

    # the watchdog

    def _lost(self) -> bool:
        controller = self._controller
        return controller is None or not controller.is_alive() or not self.backend.healthy()

    def _recover(self) -> None:
        log.warning("tor connection lost; republishing %s and %s", self.keys.visitor.address,
                    self.keys.staff.address)
        delay = 1.0
        while not self.stop.is_set():
            with self._lock:
                old, self._controller = self._controller, None
                if old is not None:
                    _quiet_close(old)
                try:
                    controller = self.backend.connect(self.stop, None)
                    self._controller = controller
                    self.publish(controller)
                except (TorError, StorageError, stem.ControllerError, stem.SocketError, OSError) as exc:
                    log.warning("tor is not back yet (%s); trying again in %.0f s", exc, delay)
                else:
                    log.info("onion services back at %s and %s", self.keys.visitor.address,
                             self.keys.staff.address)
                    return
            self.stop.wait(delay)
            delay = min(delay * 2, 15.0)

    def _check_staff_keys(self) -> None:
        try:
            if self.staff_keys.fingerprint() == self._staff_file or not self.config.tor.staff_client_auth:
                return
            clients = self._staff_clients()
        except StorageError as exc:
            log.warning("%s; keeping the staff onion as it is", exc)
            return
        if (frozenset(clients) if clients is not None else None) == self._staff_published:
            return
        with self._lock:
            controller = self._controller
            if controller is None:
                return
            watch = _UploadWatch()
            controller.add_event_listener(watch, stem.control.EventType.HS_DESC)
            try:
                self._publish_staff(controller, clients)
                if self._staff_published is not None:
                    watch.wait({self.keys.staff.service_id}, 30.0, self.stop)  # short: the lock is held
            finally:
                controller.remove_event_listener(watch)
        log.info("staff keys changed: staff onion republished for %d key(s)", len(clients or []))

    def watch(self) -> None:
        """Watchdog loop until stop: reconnect/relaunch and republish; follow staff key changes."""
        while not self.stop.wait(WATCH_INTERVAL):
            try:
                if self._lost():
                    self._recover()
                else:
                    self._check_staff_keys()
            except Exception as exc:  # noqa: BLE001 - the watchdog must outlive any single failure
                # A failure half-way (e.g. tor died during a staff republish) is noticed and
                # repaired on the next round.
                log.warning("tor watchdog: %s: %s", type(exc).__name__, exc)

    def start_watchdog(self) -> None:
        """Run watch() in a daemon thread (it must not keep a dying process alive)."""
        self._thread = threading.Thread(target=self.watch, name="tor-watchdog", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop the watchdog, withdraw both onions, close the controller, stop a launched tor."""
        self.stop.set()
        if self._thread is not None:
            self._thread.join()
        with self._lock:
            controller, self._controller = self._controller, None
            if controller is not None and controller.is_alive():
                for key in (self.keys.visitor, self.keys.staff):
                    # Closing the connection withdraws them as well: a failure here is harmless.
                    with contextlib.suppress(TorError, stem.ControllerError, stem.SocketError):
                        del_onion(controller, key)
            if controller is not None:
                _quiet_close(controller)
            self.backend.shutdown()


def _quiet_close(controller: ControllerLike) -> None:
    with contextlib.suppress(stem.ControllerError, stem.SocketError, OSError):
        controller.close()


class TorHandle:
    """A running publication: ``addresses``, and ``close()`` to withdraw it."""

    def __init__(self, addresses: OnionAddresses, session: TorSession | None) -> None:
        self.addresses = addresses
        self._session = session
        self._closed = False

    @property
    def tor_pid(self) -> int | None:
        """PID of the tor we launched (launch mode), else None."""
        backend = self._session.backend if self._session is not None else None
        return backend.pid if isinstance(backend, LaunchBackend) else None

    async def close(self) -> None:
        """Remove both onions and stop a launched tor; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        if self._session is not None:
            await asyncio.to_thread(self._session.close)


def read_torrc_addresses(config: Config) -> OnionAddresses:
    """tor.mode = "torrc": the addresses tor wrote to each HiddenServiceDir's hostname file."""
    dirs = config.tor.hidden_service_dirs
    if len(dirs) != 2:
        raise TorError("tor.hidden_service_dirs must name two directories: the visitor's, then the staff's")
    found = []
    for directory in dirs:
        path = Path(directory) / "hostname"
        try:
            found.append(path.read_text(encoding="ascii").strip())
        except PermissionError:
            raise TorPermissionDenied(
                f"permission denied reading {path}: set 'HiddenServiceDirGroupReadable 1' for it in torrc "
                "(see torrc.example) and add the user running onionchat to the group debian-tor") from None
        except FileNotFoundError:
            raise TorError(f"{path} does not exist: configure tor as in torrc.example and reload it "
                           "('systemctl reload tor')") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise TorError(f"cannot read {path}: {exc}") from None
    return OnionAddresses(visitor=found[0], staff=found[1])


def make_backend(config: Config) -> Backend:
    """The Backend for tor.mode (launch or control)."""
    if config.tor.mode == "control":
        return ControlBackend(config)
    return LaunchBackend(config)


async def start_tor(config: Config, visitor_port: int, staff_port: int, *,
                    progress: Progress | None = None, backend: Backend | None = None) -> TorHandle:
    """Reach tor as tor.mode says, publish both onions, start the watchdog.

    ``progress(percent, summary)`` is called from a worker thread during bootstrap.
    Raises a TorError subclass with one clear line when tor cannot be used.
    """
    if config.tor.mode == "torrc":
        addresses = await asyncio.to_thread(read_torrc_addresses, config)
        log.info("tor.mode is torrc: tor publishes %s and %s itself", addresses.visitor, addresses.staff)
        return TorHandle(addresses, None)
    keys = await asyncio.to_thread(service_keys, config.data_dir)
    session = TorSession(config, backend or make_backend(config), keys, visitor_port, staff_port)
    done = threading.Event()

    def run() -> None:
        try:
            session.start(progress)
        finally:
            done.set()

    try:
        await asyncio.to_thread(run)
    except BaseException:
        # Also on cancellation (Ctrl-C while bootstrapping): stop the thread, then tor.
        session.stop.set()
        def abandon() -> None:
            done.wait()
            session.close()

        await asyncio.shield(asyncio.to_thread(abandon))
        raise
    session.start_watchdog()
    return TorHandle(session.addresses, session)


def progress_printer(stream: IO[str]) -> Progress:
    """A progress callback: a redrawn bar on a terminal, one plain line per step otherwise."""
    tty = stream.isatty()
    width = 30

    def show(percent: int, summary: str) -> None:
        percent = max(0, min(100, percent))
        if tty:
            filled = width * percent // 100
            bar = "#" * filled + "-" * (width - filled)
            stream.write(f"\rtor: [{bar}] {percent:3d}% {summary[:40]:<40}")
            if percent >= 100:
                stream.write("\n")
        else:
            stream.write(f"tor: bootstrapped {percent}%: {summary}\n")
        stream.flush()

    return show
