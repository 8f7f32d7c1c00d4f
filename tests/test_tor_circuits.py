"""Launch mode's HiddenServiceDir publishing (circuit ids), key migration and CLOSECIRCUIT, with a fake tor.

The real tor does the same in tests/test_tor_network.py (marked ``tor``); here every branch
is exercised in a moment, without a tor process.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import stem

from onionchat import logs
from onionchat.config import Config, ServerConfig, TorConfig
from onionchat.errors import StorageError, TorPublishError
from onionchat.tor import backends, hsdir, publish
from onionchat.tor import keys as onionkeys
from onionchat.tor.keys import StaffClientKeys
from onionchat.web.server import LoopErrors
from tests.test_tor_unit import Event, reply

VISITOR_REND = "424242"


class FakeTor:
    """A controller of 'our' tor: answers SETCONF, CLOSECIRCUIT, circuit-status; reports uploads."""

    def __init__(self, backend: FakeLaunch) -> None:
        self.backend = backend
        self.sent: list[str] = []
        self.alive = True
        self.listeners: list[Callable[[Any], None]] = []

    def uploaded(self, lines: list[str]) -> None:
        for line in lines:
            if line.startswith("HiddenServiceDir"):
                name = line.split()[1].strip('"').rstrip("/").rsplit("/", 1)[1]
                address = self.backend.addresses[name]
                for listener in list(self.listeners):
                    listener(Event(stem.HSDescAction.UPLOAD, address.removesuffix(".onion"), "F" * 40))
                    listener(Event(stem.HSDescAction.UPLOADED, "UNKNOWN", "F" * 40))

    def msg(self, message: str) -> Any:
        self.sent.append(message)
        if message.startswith("SETCONF"):
            lines = [f"HiddenServiceDir {part.split('=', 1)[1]}" for part in message.split()
                     if part.startswith("HiddenServiceDir=")]
            self.uploaded(lines)
            return reply("250 OK")
        if message.startswith("CLOSECIRCUIT"):
            return reply("250 OK")
        return reply("510 Unrecognized command")

    def is_alive(self) -> bool:
        return self.alive

    def close(self) -> None:
        self.alive = False

    def get_info(self, param: str) -> Any:
        if param == "circuit-status":
            visitor = self.backend.addresses["visitor"].removesuffix(".onion")
            return (f"{VISITOR_REND} BUILT $A~a,$B~b BUILD_FLAGS=IS_INTERNAL PURPOSE=HS_SERVICE_REND "
                    f"HS_STATE=HSSR_JOINED REND_QUERY={visitor} TIME_CREATED=x\n"
                    f"26 BUILT $A~a BUILD_FLAGS=IS_INTERNAL PURPOSE=HS_SERVICE_INTRO HS_STATE=HSSI_ESTABLISHED "
                    f"REND_QUERY={visitor} TIME_CREATED=x")
        return 'NOTICE BOOTSTRAP PROGRESS=100 TAG=done SUMMARY="Done"'

    def add_event_listener(self, listener: Callable[[Any], None], *events: Any) -> None:
        self.listeners.append(listener)

    def remove_event_listener(self, listener: Callable[[Any], None]) -> None:
        self.listeners.remove(listener)


class FakeLaunch(backends.LaunchBackend):
    """Launch mode without a tor: 'starts' tor by writing what tor writes into each service directory."""

    def __init__(self, config: Config, *, pow_module: bool = True, wrong_hostname: bool = False) -> None:
        super().__init__(config)
        keys = onionkeys.service_keys(config.data_dir)
        self.addresses = {"visitor": keys.visitor.address, "staff": keys.staff.address}
        self.keys = {"visitor": keys.visitor, "staff": keys.staff}
        self.pow_module = pow_module
        self.wrong_hostname = wrong_hostname
        self.launched: list[str] = []  # the torrc of each launch
        self.controllers: list[FakeTor] = []
        self.alive = True

    def supports_pow(self) -> bool:
        return self.pow_module

    def connect(self, stop: threading.Event, progress: Any, on_connect: backends.OnConnect | None = None) -> Any:
        self.launched.append(self.torrc())
        controller = FakeTor(self)
        if on_connect is not None:
            on_connect(controller)
        lines = [line for line in self.services if line.startswith("HiddenServiceDir")]
        for line in lines:
            directory = Path(line.split(" ", 1)[1].strip('"'))
            key = self.keys[directory.name]
            # As tor: the address comes from the key file (ours is what the JSON key says).
            assert (directory / "hs_ed25519_secret_key").read_bytes() == hsdir.secret_key_file(key)
            assert not (directory / "hostname").exists(), "derived files are removed before a launch"
            (directory / "hostname").write_text(("a" * 56 if self.wrong_hostname else key.service_id) + ".onion\n")
        controller.uploaded(lines)
        self.controllers.append(controller)
        self.alive = True
        return controller

    def healthy(self) -> bool:
        return self.alive

    def shutdown(self) -> None:
        self.alive = False


def launch_config(tmp_path: Path, **tor: Any) -> Config:
    return Config(server=ServerConfig(data_dir=str(tmp_path / "data")), tor=TorConfig(mode="launch", **tor))


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)  # polling another thread's progress with a deadline


def test_tors_key_file_is_our_stored_key_with_tors_header() -> None:
    key = onionkeys.new_onion_key()
    data = hsdir.secret_key_file(key)
    assert len(data) == 96 and data[:32] == b"== ed25519v1-secret: type0 ==\0\0\0"
    assert "ED25519-V3:" + base64.b64encode(data[32:]).decode() == key.key
    with pytest.raises(StorageError):
        hsdir.secret_key_file(onionkeys.OnionKey(key.address, "ED25519-V3:" + base64.b64encode(b"x" * 63).decode()))


async def test_launch_mode_publishes_both_onions_from_the_stored_keys_with_circuit_ids(tmp_path: Path) -> None:
    config = launch_config(tmp_path)
    alice, bob = StaffClientKeys(config.data_dir).add("alice"), StaffClientKeys(config.data_dir).add("bob")
    keys = onionkeys.service_keys(config.data_dir)  # an existing installation: keys stored as JSON
    stored = json.loads((config.data_dir / "onion" / "visitor.key").read_text())
    hs = config.data_dir / "tor" / "hs"
    hs.joinpath("visitor").mkdir(parents=True)
    hs.joinpath("visitor", "hs_ed25519_public_key").write_bytes(b"stale")  # would make tor exit
    hs.joinpath("visitor", "hostname").write_text("old\n")
    backend = FakeLaunch(config)
    handle = await publish.start_tor(config, 18080, 18081, backend=backend)
    try:
        assert handle.addresses == publish.OnionAddresses(stored["address"], keys.staff.address)
        (torrc,) = backend.launched
        assert torrc.count("HiddenServiceExportCircuitID haproxy") == 2
        assert torrc.count("HiddenServicePoWDefensesEnabled 1") == 2 and "HiddenServiceMaxStreams 60" in torrc
        assert f'HiddenServiceDir "{hs / "visitor"}"\nHiddenServicePort 80 127.0.0.1:18080' in torrc
        assert f'HiddenServiceDir "{hs / "staff"}"\nHiddenServicePort 80 127.0.0.1:18081' in torrc
        auth = sorted(p.name for p in (hs / "staff" / "authorized_clients").iterdir())
        assert auth == ["alice.auth", "bob.auth"]
        assert (hs / "staff" / "authorized_clients" / "bob.auth").read_text() == f"descriptor:x25519:{bob.public}\n"
        assert list((hs / "visitor" / "authorized_clients").iterdir()) == []
        assert alice.public in (hs / "staff" / "authorized_clients" / "alice.auth").read_text()
        assert (hs / "visitor" / "hs_ed25519_secret_key").stat().st_mode & 0o777 == 0o600
        assert backend.controllers[0].sent == [], "no ADD_ONION: tor publishes what its torrc says"
    finally:
        await handle.close()
    assert not backend.alive


async def test_a_tor_without_the_pow_module_is_used_without_it(tmp_path: Path,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    config = launch_config(tmp_path)
    backend = FakeLaunch(config, pow_module=False)
    with caplog.at_level(logging.INFO, logger="onionchat.tor"):
        handle = await publish.start_tor(config, 1, 2, backend=backend)
    await handle.close()
    assert "PoWDefenses" not in backend.launched[0] and "proof-of-work off" in caplog.text
    assert "hs/visitor" in backend.launched[0] and "hs/staff" not in backend.launched[0], "no staff key: no staff onion"


async def test_tor_publishing_another_address_than_the_stored_key_stops_the_start(tmp_path: Path) -> None:
    config = launch_config(tmp_path)
    backend = FakeLaunch(config, wrong_hostname=True)
    with pytest.raises(TorPublishError, match="the key file is damaged"):
        await publish.start_tor(config, 1, 2, backend=backend)
    assert not backend.alive


async def test_staff_keys_change_while_tor_runs_and_a_removed_key_is_revoked_at_once(tmp_path: Path) -> None:
    config = launch_config(tmp_path)
    store = StaffClientKeys(config.data_dir)
    store.add("alice")
    backend = FakeLaunch(config)
    handle = await publish.start_tor(config, 1, 2, backend=backend)
    tor = backend.controllers[0]
    staff_dir = config.data_dir / "tor" / "hs" / "staff"
    try:
        store.add("bob")
        wait_for(lambda: len(tor.sent) == 1)
        assert tor.sent[0].count("HiddenServiceDir=") == 2 and "HiddenServiceExportCircuitID=\"haproxy\"" in tor.sent[0]
        assert sorted(p.name for p in (staff_dir / "authorized_clients").iterdir()) == ["alice.auth", "bob.auth"]
        store.remove("alice")
        wait_for(lambda: len(tor.sent) == 3)
        # Withdrawn, then published again: a tor holding the old descriptor cannot come back.
        assert tor.sent[1].count("HiddenServiceDir=") == 1 and tor.sent[2].count("HiddenServiceDir=") == 2
        assert [p.name for p in (staff_dir / "authorized_clients").iterdir()] == ["bob.auth"]
        store.remove("bob")
        wait_for(lambda: len(tor.sent) == 4)
        assert tor.sent[3].count("HiddenServiceDir=") == 1, "no key left: the staff onion is withdrawn"
        assert "hs/staff" not in "\n".join(backend.services)
    finally:
        await handle.close()


async def test_circuits_are_closed_from_the_tor_thread_only_our_rendezvous_ones(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="onionchat.tor")
    config = launch_config(tmp_path)
    backend = FakeLaunch(config)
    closing: queue.Queue[str] = queue.Queue()
    relaunched = threading.Event()
    handle = await publish.start_tor(config, 1, 2, backend=backend, closing=closing, on_new_tor=relaunched.set)
    try:
        tor = backend.controllers[0]
        for circuit in ("26", VISITOR_REND, "999"):  # an intro circuit, ours, an unknown one
            closing.put(circuit)
        wait_for(lambda: any(m.startswith("CLOSECIRCUIT") for m in tor.sent))
        assert [m for m in tor.sent if m.startswith("CLOSECIRCUIT")] == [f"CLOSECIRCUIT {VISITOR_REND}"]
        wait_for(lambda: "closed 1 Tor circuit(s)" in caplog.text)
        assert all(VISITOR_REND not in r.getMessage() for r in caplog.records), "a count, never an id"
        backend.alive = False  # our tor died: a new one numbers its circuits afresh
        wait_for(lambda: len(backend.controllers) == 2 and relaunched.is_set())
        assert len(backend.launched) == 2 and backend.launched[0] == backend.launched[1]
    finally:
        await handle.close()


async def test_accept_failures_are_logged_once_a_minute_with_a_count(caplog: pytest.LogCaptureFixture) -> None:
    loop = asyncio.get_running_loop()
    errors = LoopErrors()
    with caplog.at_level(logging.WARNING, logger="onionchat"):
        for _ in range(10_000):
            errors(loop, {"message": "socket.accept() out of system resource", "exception": OSError(24, "x")})
    lines = [r for r in caplog.records if "cannot accept" in r.getMessage()]
    assert len(lines) == 1 and "(1 time(s))" in lines[0].getMessage()
    assert errors.accept_failures == 9_999  # reported in the next minute's line


def test_the_log_writes_at_most_its_lines_a_minute_then_says_how_many_it_left_out() -> None:
    import io

    now = [0.0]
    stream = io.StringIO()
    handler = logs.BoundedHandler(stream, per_minute=60, others_per_minute=30, clock=lambda: now[0])
    ours, library = logging.getLogger("onionchat.test-bounded"), logging.getLogger("somelib.test-bounded")
    for logger in (ours, library):
        logger.addHandler(handler)
        logger.propagate = False
    try:
        for n in range(10_000):
            library.error("bad request %d", n)  # a flood of a library's complaints first
        for n in range(10_000):
            ours.warning("line %d", n)
        now[0] += 60
        ours.warning("next minute")
    finally:
        for logger in (ours, library):
            logger.removeHandler(handler)
    written = stream.getvalue().splitlines()
    assert len(written) == 30 + 60 + 2
    assert written[30] == "line 0", "onionchat's own lines have a budget of their own"
    assert written[90] == "19910 log lines were left out in the last minute(s): too many"
    assert written[91] == "next minute"
