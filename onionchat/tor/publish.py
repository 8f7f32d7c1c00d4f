"""The publishing session: both onions on tor via stem (launch, control or torrc mode), and its watchdog.

Interface for the server (all of stem runs in worker threads, never on the event loop)::

    handle = await start_tor(config, visitor_port, staff_port, progress=progress_printer(sys.stderr))
    print(handle.addresses.visitor, handle.addresses.staff)   # "xxxx.onion"
    ...
    await handle.close()   # removes both onions, stops a tor we launched

Modes (``tor.mode``):

- ``launch``: start our own tor (DataDirectory ``<data_dir>/tor``, cookie-authenticated
  control socket, ``SocksPort 0``, ``tor.extra_torrc`` appended) with both onions as
  HiddenServiceDir blocks exporting circuit ids (tor/hsdir.py), and stop it on close. Circuits
  the web layer gives up on are closed with CLOSECIRCUIT from the watchdog thread.
- ``control``: attach to a running tor (Debian: ``/run/tor/control``, group ``debian-tor``)
  and publish with ADD_ONION: no circuit ids there (tor has no such option for ADD_ONION, and
  configuring services on the system tor by SETCONF would need its own key files, vanish at
  every reload, and make that tor exit on one mistake).
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
import queue
import threading
import time
from collections.abc import Callable
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
from onionchat.tor.backends import Backend, LaunchBackend, make_backend
from onionchat.tor.control import (
    ControllerLike,
    Progress,
    UploadWatch,
    add_onion,
    close_circuits,
    del_onion,
    quiet_close,
    setconf,
)
from onionchat.tor.hsdir import ServiceDir, ServiceDirs
from onionchat.tor.keys import ServiceKeys, StaffClientKeys, service_keys

log = logging.getLogger("onionchat.tor")

WATCH_INTERVAL = 0.5  # seconds between watchdog checks
PUBLISH_TIMEOUT = 90.0  # wait this long for a first descriptor upload before going on anyway
CLOSE_QUEUE = 1000  # circuits waiting to be closed; beyond, a request is dropped (its connections are cut anyway)
CLOSE_LOG_SECONDS = 60.0


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
    """Connection, publication and the watchdog; every method blocks: run them in threads.

    Two ways of publishing: a tor we launch gets both services as HiddenServiceDir blocks
    (tor/hsdir.py), which export each connection's circuit id; a running tor we attach to
    (control mode) gets them by ADD_ONION, which cannot (so no circuit ids there).

    ``closing``: circuit ids the web layer wants closed (CLOSECIRCUIT); the watchdog thread
    takes them, so the event loop never waits for stem. ``on_new_tor`` is called (in this
    thread) when a new tor process took over: circuit ids of the old one mean nothing now.
    """

    def __init__(self, config: Config, backend: Backend, keys: ServiceKeys, visitor_port: int,
                 staff_port: int, *, closing: queue.Queue[str] | None = None,
                 on_new_tor: Callable[[], None] | None = None) -> None:
        self.config = config
        self.backend = backend
        self.keys = keys
        self.staff_keys = StaffClientKeys(config.data_dir)
        self.visitor_target = _target(config.server.visitor_host, visitor_port)
        self.staff_target = _target(config.server.staff_host, staff_port)
        self.stop = threading.Event()
        self.closing: queue.Queue[str] = closing if closing is not None else queue.Queue(CLOSE_QUEUE)
        self.on_new_tor = on_new_tor
        self._lock = threading.Lock()  # one user of the controller at a time
        self._controller: ControllerLike | None = None
        self._pow = config.tor.proof_of_work
        self._staff_published: frozenset[str] | None = None  # keys of the live staff onion
        self._staff_file: tuple[int, int] | None = None
        self._thread: threading.Thread | None = None
        self._closed = 0  # circuits closed since the last log line about them
        self._closed_logged = -CLOSE_LOG_SECONDS
        self.dirs: ServiceDirs | None = None
        if isinstance(backend, LaunchBackend):
            self.dirs = ServiceDirs(backend.directory, keys, self.visitor_target, self.staff_target,
                                    pow_defense=False, max_streams=config.tor.max_streams)

    @property
    def addresses(self) -> OnionAddresses:
        """Both addresses (known from the key files, published or not)."""
        return OnionAddresses(visitor=self.keys.visitor.address, staff=self.keys.staff.address)

    # publishing

    @staticmethod
    def _key_list(clients: dict[str, str] | None) -> list[str] | None:
        """ADD_ONION's client keys for the staff onion: [] means no client auth; None means do not publish."""
        return None if clients is None else sorted(set(clients.values()))

    def _staff_clients_or_none(self) -> dict[str, str] | None:
        """_staff_client_labels, with an unreadable key file meaning: do not publish the staff onion."""
        try:
            return self._staff_client_labels()
        except StorageError as exc:
            log.warning("%s; the staff onion stays unpublished until that is fixed", exc)
            return None

    def _staff_client_labels(self) -> dict[str, str] | None:
        """Staff keys by label: {} means no client auth; None means do not publish."""
        self._staff_file = self.staff_keys.fingerprint()
        if not self.config.tor.staff_client_auth:
            return {}
        clients = self.staff_keys.load()
        return clients or None

    def _warn_staff(self, clients: list[str] | dict[str, str] | None) -> None:
        if clients is None:
            log.warning("no staff keys yet: the staff onion stays unpublished until one is added with "
                        "'onionchat staff-key add LABEL'")
        elif not clients:
            log.warning("tor.staff_client_auth is false: the staff onion %s is reachable by anyone who "
                        "knows its address; only the staff password protects it", self.keys.staff.address)

    def _publish_staff(self, controller: ControllerLike, clients: list[str] | None) -> None:
        if self._staff_published is not None:
            del_onion(controller, self.keys.staff)
            self._staff_published = None
        self._warn_staff(clients)
        if clients is None:
            return
        self._pow = add_onion(controller, "staff", self.keys.staff, self.staff_target, clients,
                              pow_defense=self._pow, max_streams=self.config.tor.max_streams)
        self._staff_published = frozenset(clients)

    def publish(self, controller: ControllerLike) -> None:
        """Publish both onions on a fresh controller (ADD_ONION) and wait for their first descriptor upload."""
        watch = UploadWatch()
        controller.add_event_listener(watch, stem.control.EventType.HS_DESC)
        try:
            started = time.monotonic()
            self._staff_published = None  # a fresh connection or tor has none of ours
            self._pow = add_onion(controller, "visitor", self.keys.visitor, self.visitor_target, [],
                                  pow_defense=self._pow, max_streams=self.config.tor.max_streams)
            self._publish_staff(controller, self._key_list(self._staff_clients_or_none()))
            self._await_uploads(watch, started)
        finally:
            controller.remove_event_listener(watch)

    def _await_uploads(self, watch: UploadWatch, started: float) -> None:
        wanted = {self.keys.visitor.service_id}
        if self._staff_published is not None:
            wanted.add(self.keys.staff.service_id)
        missing = watch.wait(wanted, PUBLISH_TIMEOUT, self.stop)
        if missing and not self.stop.is_set():
            log.warning("tor has not confirmed a descriptor upload for %s yet; it keeps trying",
                        ", ".join(sorted(m + ".onion" for m in missing)))
        log.info("onion services published in %.1f s (proof-of-work %s)", time.monotonic() - started,
                 "on" if self._pow else "off")

    def _dir_services(self) -> list[ServiceDir]:
        """Launch mode: the services to put in our tor's torrc, the staff keys read now."""
        assert self.dirs is not None
        clients = self._staff_clients_or_none()
        self._warn_staff(clients)
        self._staff_published = None if clients is None else frozenset(clients.values())
        return self.dirs.services(clients or None, clients is not None)

    def _launch(self, progress: Progress | None) -> ControllerLike:
        """Launch mode: derive the service directories, start our tor with them, wait for the uploads."""
        assert self.dirs is not None and isinstance(self.backend, LaunchBackend)
        if self._pow and not self.dirs.pow_defense:
            self.dirs.pow_defense = self.backend.supports_pow()
            if not self.dirs.pow_defense:
                log.warning("this tor does not support the proof-of-work defence; the onions are published "
                            "without it (tor 0.4.9.2 or newer with the pow module has it)")
        self._pow = self.dirs.pow_defense
        services = self._dir_services()
        self.dirs.prepare(services)
        self.backend.services = self.dirs.torrc_lines(services)
        watch = UploadWatch()
        started = time.monotonic()
        controller = self.backend.connect(
            self.stop, progress, lambda c: c.add_event_listener(watch, stem.control.EventType.HS_DESC))
        try:
            self.dirs.check_hostnames(services)
            self._await_uploads(watch, started)
        except BaseException:
            quiet_close(controller)
            raise
        finally:
            with contextlib.suppress(stem.ControllerError, stem.SocketError, ValueError):
                controller.remove_event_listener(watch)
        return controller

    def _connect_and_publish(self, progress: Progress | None) -> None:
        if self.dirs is not None:
            self._controller = self._launch(progress)
            return
        controller = self.backend.connect(self.stop, progress)
        self._controller = controller
        self.publish(controller)

    def start(self, progress: Progress | None) -> None:
        """Connect (launching tor if ours) and publish; raises TorError subclasses."""
        with self._lock:
            self._connect_and_publish(progress)

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
                    self._connect_and_publish(None)
                except (TorError, StorageError, stem.ControllerError, stem.SocketError, OSError) as exc:
                    log.warning("tor is not back yet (%s); trying again in %.0f s", exc, delay)
                else:
                    log.info("onion services back at %s and %s", self.keys.visitor.address,
                             self.keys.staff.address)
                    if self.on_new_tor is not None and self.dirs is not None:
                        self.on_new_tor()  # a relaunched tor numbers its circuits from 1 again
                    return
            self.stop.wait(delay)
            delay = min(delay * 2, 15.0)

    def _check_staff_keys(self) -> None:
        try:
            if self.staff_keys.fingerprint() == self._staff_file or not self.config.tor.staff_client_auth:
                return
            clients = self._staff_client_labels()
        except StorageError as exc:
            log.warning("%s; keeping the staff onion as it is", exc)
            return
        published = frozenset(clients.values()) if clients is not None else None
        if published == self._staff_published:
            return
        with self._lock:
            controller = self._controller
            if controller is None:
                return
            watch = UploadWatch()
            controller.add_event_listener(watch, stem.control.EventType.HS_DESC)
            try:
                if self.dirs is not None:
                    self._republish_staff_dir(controller, clients)
                else:
                    self._publish_staff(controller, self._key_list(clients))
                if self._staff_published is not None:
                    watch.wait({self.keys.staff.service_id}, 30.0, self.stop)  # short: the lock is held
            finally:
                controller.remove_event_listener(watch)
        log.info("staff keys changed: staff onion republished for %d key(s)", len(clients or {}))

    def _republish_staff_dir(self, controller: ControllerLike, clients: dict[str, str] | None) -> None:
        """Launch mode: the staff service's client keys changed while tor runs.

        A key removed is revoked by withdrawing the staff service and publishing it again:
        otherwise a tor that still has the old descriptor could keep connecting for a while
        (checked on tor 0.4.9.11). Every staff connection then ends; staff browsers reconnect.
        """
        assert self.dirs is not None
        old = self._staff_published
        new = frozenset(clients.values()) if clients is not None else None
        services = self.dirs.services(clients or None, new is not None)
        if old is None and new is not None:
            self.dirs.prepare([services[-1]])  # the staff service
        elif new is not None:
            self.dirs.write_clients(services[-1])
        revoked = old is not None and (new is None or bool(old - new))
        if revoked:
            setconf(controller, self.dirs.setconf(self.dirs.services(None, False)))
            self._staff_published = None
        if new is not None:
            setconf(controller, self.dirs.setconf(services))
        self._staff_published = new
        assert isinstance(self.backend, LaunchBackend)
        self.backend.services = self.dirs.torrc_lines(services)  # a relaunch publishes the same

    def _close_requested(self, timeout: float) -> None:
        """Wait up to ``timeout`` for circuits to close, then ask tor to close them all (CLOSECIRCUIT)."""
        try:
            first = self.closing.get(timeout=timeout)
        except queue.Empty:
            return
        wanted = {first}
        with contextlib.suppress(queue.Empty):
            while len(wanted) < CLOSE_QUEUE:
                wanted.add(self.closing.get_nowait())
        wanted.discard("")  # the wake-up of close()
        with self._lock:
            controller = self._controller
            if controller is None or not wanted or self.stop.is_set():
                return
            self._closed += close_circuits(controller, wanted, self.keys.visitor.service_id)
        now = time.monotonic()
        if self._closed and now - self._closed_logged >= CLOSE_LOG_SECONDS:
            # A count, never an id; at most one line a minute however many circuits go.
            log.info("closed %d Tor circuit(s) that went on over their budgets", self._closed)
            self._closed, self._closed_logged = 0, now

    def watch(self) -> None:
        """Watchdog loop until stop: close circuits asked for, reconnect/relaunch and republish, follow staff keys."""
        while not self.stop.is_set():
            try:
                self._close_requested(WATCH_INTERVAL)
                if self.stop.is_set():
                    break
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
        with contextlib.suppress(queue.Full):
            self.closing.put_nowait("")  # wakes the watchdog at once
        if self._thread is not None:
            self._thread.join()
        with self._lock:
            controller, self._controller = self._controller, None
            if controller is not None and controller.is_alive() and self.dirs is None:
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
                    progress: Progress | None = None, backend: Backend | None = None,
                    closing: queue.Queue[str] | None = None,
                    on_new_tor: Callable[[], None] | None = None) -> TorHandle:
    """Reach tor as tor.mode says, publish both onions, start the watchdog.

    ``progress(percent, summary)`` is called from a worker thread during bootstrap;
    ``closing`` and ``on_new_tor`` as in TorSession. Raises a TorError subclass with one
    clear line when tor cannot be used.
    """
    if config.tor.mode == "torrc":
        addresses = await asyncio.to_thread(read_torrc_addresses, config)
        log.info("tor.mode is torrc: tor publishes %s and %s itself", addresses.visitor, addresses.staff)
        return TorHandle(addresses, None)
    keys = await asyncio.to_thread(service_keys, config.data_dir)
    session = TorSession(config, backend or make_backend(config), keys, visitor_port, staff_port, closing=closing,
                         on_new_tor=on_new_tor)
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
