"""The publishing session: both onions on tor via stem (launch, control or torrc mode), and its watchdog.

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
key in ``<data_dir>/onion/staff-clients.json`` (see tor/keys.py for the files to back up).
A watchdog thread relaunches/reconnects and republishes the same addresses when tor or the
control connection goes away, and republishes the staff onion when the key file changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import stem
import stem.connection
import stem.control
import stem.response

from onionchat.config import Config
from onionchat.errors import (
    StorageError,
    TorError,
    TorPermissionDenied,
)
from onionchat.tor.backends import Backend, make_backend
from onionchat.tor.control import ControllerLike, Progress, UploadWatch, add_onion, del_onion, quiet_close
from onionchat.tor.keys import ServiceKeys, StaffClientKeys, service_keys

log = logging.getLogger("onionchat.tor")

WATCH_INTERVAL = 0.5  # seconds between watchdog checks
PUBLISH_TIMEOUT = 90.0  # wait this long for a first descriptor upload before going on anyway


@dataclass(frozen=True)
class OnionAddresses:
    """Both onion addresses, each "xxxx.onion"."""

    visitor: str
    staff: str



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
        watch = UploadWatch()
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
                    quiet_close(old)
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
            watch = UploadWatch()
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
                quiet_close(controller)
            self.backend.shutdown()


class TorHandle:
    """A running publication: ``addresses``, and ``close()`` to withdraw it."""

    def __init__(self, addresses: OnionAddresses, session: TorSession | None) -> None:
        self.addresses = addresses
        self._session = session
        self._closed = False


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
