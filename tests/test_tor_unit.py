"""Unit tests of the stem-facing code with a fake controller: no tor process is started."""

from __future__ import annotations

import asyncio
import base64
import io
import logging
import os
import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import stem
import stem.connection
import stem.response
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from onionchat import cli as onionchat_cli
from onionchat.config import Config, ServerConfig, TorConfig
from onionchat.errors import (
    StaffKeyError,
    StorageError,
    TorAuthError,
    TorBootstrapTimeout,
    TorError,
    TorMissing,
    TorPermissionDenied,
    TorPublishError,
)
from onionchat.tor import backends, control, publish
from onionchat.tor import keys as onionkeys
from onionchat.tor.keys import OnionKey, StaffClientKeys
from onionchat.tor.systemd import render_unit

CLIENT_B32 = re.compile(r"^[A-Z2-7]{52}$")


def reply(text: str) -> Any:
    """A real stem ControlMessage parsed from tor's wire format."""
    return stem.response.ControlMessage.from_str(text, normalize=True)


class Event:
    def __init__(self, action: Any, address: str, directory: str) -> None:
        self.action, self.address, self.directory_fingerprint = action, address, directory


class FakeController:
    """Answers like tor: ADD_ONION/DEL_ONION, bootstrap phase, HS_DESC upload events."""

    def __init__(self, ids: dict[str, str], *, refuse_pow: bool = False, bootstrap: int = 100,
                 wrong_id: bool = False, refuse_all: bool = False) -> None:
        self.service_ids = ids  # key blob -> address, as real tor would derive it
        self.sent: list[str] = []
        self.refuse_pow, self.bootstrap, self.wrong_id, self.refuse_all = refuse_pow, bootstrap, wrong_id, refuse_all
        self.alive = True
        self.closed = False
        self.listeners: list[Callable[[Any], None]] = []
        self.onions: set[str] = set()

    def msg(self, message: str) -> Any:
        self.sent.append(message)
        if message.startswith("ADD_ONION"):
            if self.refuse_all:
                return reply('512 Bad arguments to ADD_ONION: Invalid key type')
            if self.refuse_pow and "PoWDefensesEnabled" in message:
                return reply('513 Unrecognized option "PoWDefensesEnabled"')
            blob = message.split()[1].removeprefix("ED25519-V3:")
            service_id = self.service_ids[blob]
            if self.wrong_id:
                service_id = "a" * 56
            self.onions.add(service_id)
            for listener in list(self.listeners):
                listener(Event(stem.HSDescAction.UPLOAD, service_id, "F" * 40))
                listener(Event(stem.HSDescAction.UPLOADED, "UNKNOWN", "F" * 40))
            return reply(f"250-ServiceID={service_id}\r\n250 OK")
        if message.startswith("DEL_ONION"):
            service_id = message.split()[1]
            if service_id not in self.onions:
                return reply("552 Unknown Onion Service id")
            self.onions.discard(service_id)
            return reply("250 OK")
        return reply("510 Unrecognized command")

    def is_alive(self) -> bool:
        return self.alive

    def close(self) -> None:
        self.closed = True
        self.alive = False

    def get_info(self, param: str) -> Any:
        assert param == "status/bootstrap-phase"
        return f'NOTICE BOOTSTRAP PROGRESS={self.bootstrap} TAG=x SUMMARY="step {self.bootstrap}"'

    def add_event_listener(self, listener: Callable[[Any], None], *events: Any) -> None:
        self.listeners.append(listener)

    def remove_event_listener(self, listener: Callable[[Any], None]) -> None:
        self.listeners.remove(listener)


class FakeBackend:
    def __init__(self, make: Callable[[], FakeController]) -> None:
        self.make = make
        self.controllers: list[FakeController] = []
        self.alive = True
        self.shut = 0

    def connect(self, stop: threading.Event, progress: control.Progress | None,
                on_connect: backends.OnConnect | None = None) -> control.ControllerLike:
        controller = self.make()
        if on_connect is not None:
            on_connect(controller)
        control.wait_bootstrap(controller, 5, stop, progress)
        self.controllers.append(controller)
        self.alive = True
        return controller

    def healthy(self) -> bool:
        return self.alive

    def shutdown(self) -> None:
        self.shut += 1


def make_config(tmp_path: Path, **tor_settings: Any) -> Config:
    return Config(server=ServerConfig(data_dir=str(tmp_path / "data")), tor=TorConfig(**tor_settings))


def known_ids(*keys: OnionKey) -> dict[str, str]:
    """What the fake tor needs to answer ADD_ONION for ``keys``."""
    return {k.key.removeprefix("ED25519-V3:"): k.service_id for k in keys}


def fake_backend(config: Config) -> FakeBackend:
    keys = onionkeys.service_keys(config.data_dir)
    ids = known_ids(keys.visitor, keys.staff)
    return FakeBackend(lambda: FakeController(ids))


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


# -- keys ---------------------------------------------------------------------------------


def test_onion_address_matches_a_known_v3_address() -> None:
    known = "duckduckgogg42xjoc72x3sjasowoarfbgcmvfimaftt6twagswzczad.onion"
    raw = base64.b32decode(known.removesuffix(".onion").upper())
    assert onionkeys.onion_address(raw[:32]) == known


def test_onion_keys_are_created_once_with_mode_0600(tmp_path: Path) -> None:
    first = onionkeys.service_keys(tmp_path)
    again = onionkeys.service_keys(tmp_path)
    assert first == again
    assert first.visitor.address != first.staff.address
    for name in (onionkeys.VISITOR_KEY, onionkeys.STAFF_KEY):
        path = tmp_path / "onion" / name
        assert path.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "onion").stat().st_mode & 0o777 == 0o700
    assert re.fullmatch(r"[a-z2-7]{56}\.onion", first.visitor.address)
    assert len(base64.b64decode(first.visitor.key.removeprefix("ED25519-V3:"))) == 64


def test_damaged_key_file_is_a_clear_storage_error(tmp_path: Path) -> None:
    path = tmp_path / "onion" / "visitor.key"
    path.parent.mkdir(parents=True)
    path.write_text('{"address": "nope", "key": "ED25519-V3:AAAA"}')
    with pytest.raises(StorageError, match="damaged"):
        onionkeys.load_or_create(path)


def test_client_key_pair_and_auth_lines() -> None:
    pair = onionkeys.new_client_keypair()
    assert CLIENT_B32.match(pair.private) and CLIENT_B32.match(pair.public)
    private = X25519PrivateKey.from_private_bytes(base64.b32decode(pair.private + "===="))
    assert base64.b32encode(private.public_key().public_bytes_raw()).decode().rstrip("=") == pair.public
    staff = "b" * 56 + ".onion"
    assert onionkeys.auth_private_line(staff, pair.private) == f"{'b' * 56}:descriptor:x25519:{pair.private}"
    assert onionkeys.auth_server_line(pair.public) == f"descriptor:x25519:{pair.public}"


def test_staff_keys_store_only_public_halves(tmp_path: Path) -> None:
    store = StaffClientKeys(tmp_path)
    pair = store.add("alice-laptop")
    assert store.load() == {"alice-laptop": pair.public}
    assert pair.private not in store.path.read_text()
    assert store.path.stat().st_mode & 0o777 == 0o600
    with pytest.raises(StaffKeyError, match="already"):
        store.add("alice-laptop")
    with pytest.raises(StaffKeyError, match="label"):
        store.add("no spaces please")
    store.remove("alice-laptop")
    assert store.load() == {}
    with pytest.raises(StaffKeyError, match="no staff key"):
        store.remove("alice-laptop")


# -- ADD_ONION ----------------------------------------------------------------------------


def test_add_onion_sends_pow_max_streams_and_every_client_key(tmp_path: Path) -> None:
    key = onionkeys.new_onion_key()
    controller = FakeController(known_ids(key))
    assert control.add_onion(controller, "staff", key, "127.0.0.1:8081", ["A" * 52, "B" * 52],
                         pow_defense=True, max_streams=60)
    (command,) = controller.sent
    assert command.startswith(f"ADD_ONION {key.key} Flags=DiscardPK,V3Auth,MaxStreamsCloseCircuit ")
    assert "MaxStreams=60" in command and "PoWDefensesEnabled=1" in command
    assert "Port=80,127.0.0.1:8081" in command
    assert command.count("ClientAuthV3=") == 2


def test_pow_refused_falls_back_and_logs(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    key = onionkeys.new_onion_key()
    controller = FakeController(known_ids(key), refuse_pow=True)
    with caplog.at_level(logging.WARNING, logger="onionchat.tor"):
        assert not control.add_onion(controller, "visitor", key, "127.0.0.1:8080", [], pow_defense=True,
                                 max_streams=0)
    assert len(controller.sent) == 2
    assert "PoWDefensesEnabled" not in controller.sent[1] and "MaxStreams" not in controller.sent[1]
    assert "proof-of-work" in caplog.text and "Unrecognized option" in caplog.text


def test_refusal_and_wrong_address_are_publish_errors() -> None:
    key = onionkeys.new_onion_key()
    with pytest.raises(TorPublishError, match="refused to publish the visitor onion"):
        control.add_onion(FakeController(known_ids(key), refuse_all=True), "visitor", key, "t:1", [], pow_defense=False,
                      max_streams=0)
    with pytest.raises(TorPublishError, match="key file is damaged"):
        control.add_onion(FakeController(known_ids(key), wrong_id=True), "visitor", key, "t:1", [], pow_defense=False,
                      max_streams=0)


def test_bootstrap_progress_and_timeout() -> None:
    seen: list[tuple[int, str]] = []
    control.wait_bootstrap(FakeController({}, bootstrap=100), 1, threading.Event(), lambda p, s: seen.append((p, s)))
    assert seen == [(100, "step 100")]
    with pytest.raises(TorBootstrapTimeout, match="stuck at 50%"):
        control.wait_bootstrap(FakeController({}, bootstrap=50), 0.3, threading.Event(), None)


# -- reaching tor ----------------------------------------------------------------------------


async def test_missing_tor_says_how_to_install_or_run_local(tmp_path: Path) -> None:
    config = make_config(tmp_path, tor_binary="no-such-tor-binary-here")
    with pytest.raises(TorMissing) as caught:
        await publish.start_tor(config, 8080, 8081)
    assert "apt-get install tor" in str(caught.value) and "--local" in str(caught.value)
    assert "\n" not in str(caught.value)


def try_connect(path: Path) -> str:
    try:
        control.connect_socket(path)
    except TorPermissionDenied as exc:
        return f"denied: {exc}"
    except Exception as exc:  # noqa: BLE001 - any other outcome is reported and fails the test
        return f"other: {exc!r}"
    return "connected"


def test_control_socket_permission_denied_names_the_group(tmp_path: Path) -> None:
    """A real socket this user may not open; as root (CI) a forked child becomes 'nobody' first."""
    path = tmp_path / "control"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(1)
    if os.geteuid() != 0:
        path.chmod(0)
        outcome = try_connect(path)
    else:
        path.chmod(0o600)
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: drop privileges, try, report, leave without pytest's cleanup
            code = 0
            try:
                os.close(read_end)
                os.setgroups([])
                os.setgid(65534)
                os.setuid(65534)
                os.write(write_end, try_connect(path).encode())
            except BaseException:  # noqa: BLE001 - a child must never return into pytest
                code = 1
            finally:
                os._exit(code)
        os.close(write_end)
        os.waitpid(pid, 0)
        outcome = os.read(read_end, 4096).decode()
        os.close(read_end)
    listener.close()
    assert outcome.startswith("denied: permission denied on tor's control socket"), outcome
    assert "debian-tor" in outcome and "\n" not in outcome


def test_missing_control_socket_is_one_clear_line(tmp_path: Path) -> None:
    backend = backends.ControlBackend(make_config(tmp_path, mode="control", control_socket=str(tmp_path / "nothing")))
    with pytest.raises(TorError, match="no tor control socket"):
        backend.connect(threading.Event(), None)


@pytest.mark.parametrize(("failure", "expected", "text"), [
    (stem.connection.IncorrectPassword("bad"), TorAuthError, "refused tor.control_password"),
    (stem.connection.MissingPassword("none"), TorAuthError, "set tor.control_password"),
    (stem.connection.UnreadableCookieFile("x", "/run/tor/control.authcookie", False), TorPermissionDenied,
     "debian-tor"),
    (stem.connection.AuthenticationFailure("nope"), TorAuthError, "refused authentication"),
])
def test_authentication_failures(monkeypatch: pytest.MonkeyPatch, failure: Exception, expected: type[Exception],
                                 text: str) -> None:
    def fail(controller: Any, password: str | None = None) -> None:
        raise failure

    monkeypatch.setattr(stem.connection, "authenticate", fail)
    controller = FakeController({})
    with pytest.raises(expected, match=re.escape(text)):
        control.authenticate(controller, "", "/run/tor/control")
    assert controller.closed


def test_launch_torrc_has_our_options_then_extra_lines(tmp_path: Path) -> None:
    config = make_config(tmp_path, extra_torrc=["UseBridges 1", "Bridge obfs4 192.0.2.1:1 X"])
    text = backends.LaunchBackend(config).torrc()
    assert "SocksPort 0" in text and "CookieAuthentication 1" in text and "SafeLogging 1" in text
    assert f"DataDirectory {config.data_dir / 'tor'}" in text
    assert text.rstrip().endswith("UseBridges 1\nBridge obfs4 192.0.2.1:1 X")
    with pytest.raises(TorError, match="line breaks"):
        backends.LaunchBackend(make_config(tmp_path, extra_torrc=["A 1\nB 2"])).torrc()


def test_torrc_mode_reads_hostname_files(tmp_path: Path) -> None:
    visitor, staff = tmp_path / "v", tmp_path / "s"
    config = make_config(tmp_path, mode="torrc", hidden_service_dirs=[str(visitor), str(staff)])
    with pytest.raises(TorError, match=r"torrc\.example"):
        publish.read_torrc_addresses(config)
    for directory, name in ((visitor, "v" * 56), (staff, "s" * 56)):
        directory.mkdir()
        (directory / "hostname").write_text(name + ".onion\n")
    assert publish.read_torrc_addresses(config) == publish.OnionAddresses("v" * 56 + ".onion", "s" * 56 + ".onion")


# -- the session and its watchdog ------------------------------------------------------------


async def test_start_publishes_both_and_close_removes_them(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    StaffClientKeys(config.data_dir).add("alice")
    StaffClientKeys(config.data_dir).add("bob")
    backend = fake_backend(config)
    seen: list[int] = []
    handle = await publish.start_tor(config, 18080, 18081, progress=lambda p, s: seen.append(p), backend=backend)
    keys = onionkeys.service_keys(config.data_dir)
    assert handle.addresses == publish.OnionAddresses(keys.visitor.address, keys.staff.address)
    (controller,) = backend.controllers
    visitor_cmd, staff_cmd = controller.sent
    assert "Port=80,127.0.0.1:18080" in visitor_cmd and "ClientAuthV3" not in visitor_cmd
    assert "Port=80,127.0.0.1:18081" in staff_cmd and staff_cmd.count("ClientAuthV3=") == 2
    assert seen == [100]
    await handle.close()
    assert controller.sent[-2:] == [f"DEL_ONION {keys.visitor.service_id}", f"DEL_ONION {keys.staff.service_id}"]
    assert controller.closed and backend.shut == 1
    await handle.close()  # twice is fine


async def test_no_staff_keys_means_no_staff_onion(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    config = make_config(tmp_path)
    backend = fake_backend(config)
    with caplog.at_level(logging.WARNING, logger="onionchat.tor"):
        handle = await publish.start_tor(config, 1, 2, backend=backend)
    assert len(backend.controllers[0].sent) == 1
    assert "staff-key add" in caplog.text
    await handle.close()


async def test_staff_auth_off_is_published_open_with_a_warning(tmp_path: Path,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    config = make_config(tmp_path, staff_client_auth=False)
    backend = fake_backend(config)
    with caplog.at_level(logging.WARNING, logger="onionchat.tor"):
        handle = await publish.start_tor(config, 1, 2, backend=backend)
    staff_cmd = backend.controllers[0].sent[1]
    assert "V3Auth" not in staff_cmd and "ClientAuthV3" not in staff_cmd
    assert "staff_client_auth is false" in caplog.text
    await handle.close()


async def test_watchdog_republishes_after_a_lost_connection(tmp_path: Path,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    config = make_config(tmp_path)
    StaffClientKeys(config.data_dir).add("alice")
    backend = fake_backend(config)
    with caplog.at_level(logging.INFO, logger="onionchat.tor"):
        handle = await publish.start_tor(config, 1, 2, backend=backend)
        backend.controllers[0].alive = False  # the control connection drops
        wait_for(lambda: len(backend.controllers) == 2 and len(backend.controllers[1].sent) == 2)
        backend.alive = False  # the launched tor dies
        wait_for(lambda: len(backend.controllers) == 3 and len(backend.controllers[2].sent) == 2)
        await handle.close()
    assert backend.controllers[0].closed
    assert caplog.text.count("tor connection lost; republishing") == 2
    assert caplog.text.count("onion services back at") == 2


async def test_watchdog_follows_staff_key_changes(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    store = StaffClientKeys(config.data_dir)
    alice = store.add("alice")
    backend = fake_backend(config)
    handle = await publish.start_tor(config, 1, 2, backend=backend)
    controller = backend.controllers[0]
    staff_id = onionkeys.service_keys(config.data_dir).staff.service_id
    bob = store.add("bob")
    wait_for(lambda: len(controller.sent) == 4)
    assert controller.sent[2] == f"DEL_ONION {staff_id}"
    assert f"ClientAuthV3={alice.public}" in controller.sent[3] and f"ClientAuthV3={bob.public}" in controller.sent[3]
    store.remove("alice")
    store.remove("bob")
    wait_for(lambda: len(controller.sent) == 5)  # no key left: the staff onion is withdrawn
    assert controller.sent[4] == f"DEL_ONION {staff_id}"
    await handle.close()


def test_progress_printer_plain_and_tty() -> None:
    plain = io.StringIO()
    show = publish.progress_printer(plain)
    show(5, "Connecting")
    show(100, "Done")
    assert plain.getvalue() == "tor: bootstrapped 5%: Connecting\ntor: bootstrapped 100%: Done\n"

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    tty = Tty()
    show = publish.progress_printer(tty)
    show(50, "Half")
    show(100, "Done")
    assert tty.getvalue().startswith("\rtor: [###############---------------]  50% Half")
    assert tty.getvalue().endswith("\n") and tty.getvalue().count("\n") == 1


# -- CLI and unit file ---------------------------------------------------------------------


def run_cli(argv: list[str]) -> int:
    return onionchat_cli.main(argv)  # the whole command: --config is resolved there


def test_staff_key_cli_prints_the_private_key_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "onionchat.toml"
    cfg.write_text(f'[server]\ndata_dir = "{tmp_path / "data"}"\n')
    assert run_cli(["staff-key", "add", "alice", "--config", str(cfg)]) == 0
    out = capsys.readouterr().out
    staff = onionkeys.service_keys(tmp_path / "data").staff
    (private,) = [line for line in out.splitlines() if CLIENT_B32.match(line)]
    assert f"{staff.service_id}:descriptor:x25519:{private}" in out.splitlines()
    stored = StaffClientKeys(tmp_path / "data").load()
    assert private not in str(stored) and set(stored) == {"alice"}
    assert run_cli(["staff-key", "list", "--config", str(cfg)]) == 0
    assert capsys.readouterr().out == f"alice\t{stored['alice']}\n"
    assert run_cli(["staff-key", "remove", "alice", "--config", str(cfg)]) == 0
    assert StaffClientKeys(tmp_path / "data").load() == {}


def test_onion_show_prints_both_addresses_and_a_qr_code(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "onionchat.toml"
    cfg.write_text(f'[server]\ndata_dir = "{tmp_path / "data"}"\n')
    assert run_cli(["onion", "show", "--config", str(cfg)]) == 0
    out = capsys.readouterr().out
    keys = onionkeys.service_keys(tmp_path / "data")
    assert f"visitor: http://{keys.visitor.address}/" in out and f"staff:   http://{keys.staff.address}/" in out
    assert "█" in out  # the QR code
    assert run_cli(["onion", "show", "--no-qr", "--config", str(cfg)]) == 0
    assert "█" not in capsys.readouterr().out


@pytest.mark.parametrize("mode", ["launch", "control"])
def test_systemd_unit_sandbox(mode: str) -> None:
    unit = render_unit(executable="/usr/bin/onionchat", mode=mode)
    for line in ("User=onionchat", "LimitCORE=0", "LimitNOFILE=65536", "PrivateTmp=yes", "ProtectSystem=strict",
                 "ReadWritePaths=/var/lib/onionchat", "NoNewPrivileges=yes", "ProtectHome=yes",
                 "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6", "Restart=on-failure",
                 "ExecStart=/usr/bin/onionchat serve --config /var/lib/onionchat/onionchat.toml"):
        assert line in unit.splitlines()
    assert ("SupplementaryGroups=debian-tor" in unit.splitlines()) == (mode == "control")


def test_onion_key_dataclass_service_id() -> None:
    assert OnionKey(address="x" * 56 + ".onion", key="ED25519-V3:").service_id == "x" * 56


@pytest.mark.tor
def test_torrc_example_is_accepted_by_tor(tmp_path: Path) -> None:
    binary = shutil.which("tor")
    if binary is None:
        pytest.skip("tor is not installed")
    repo = Path(__file__).resolve().parent.parent
    text = (repo / "torrc.example").read_text().replace("/var/lib/tor/", f"{tmp_path}/hs/")
    torrc = tmp_path / "torrc"
    torrc.write_text(text + f"DataDirectory {tmp_path / 'data'}\nSocksPort 0\n")
    result = subprocess.run([binary, "--verify-config", "-f", str(torrc), "--defaults-torrc", str(torrc) + ".none"],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


async def test_cancelling_start_stops_bootstrap_and_tor(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    keys = onionkeys.service_keys(config.data_dir)
    backend = FakeBackend(lambda: FakeController(known_ids(keys.visitor, keys.staff), bootstrap=50))
    task = asyncio.ensure_future(publish.start_tor(config, 1, 2, backend=backend))
    await asyncio.sleep(0.3)  # let the worker thread reach the bootstrap wait
    task.cancel()
    started = time.monotonic()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.monotonic() - started < 3  # not the 5 s bootstrap timeout
    assert backend.shut == 1


@pytest.mark.tor
async def test_a_bad_extra_torrc_line_is_reported_with_tors_own_words(tmp_path: Path) -> None:
    if shutil.which("tor") is None:
        pytest.skip("tor is not installed")
    config = make_config(tmp_path, mode="launch", extra_torrc=["NoSuchOptionAnywhere 1"])
    with pytest.raises(TorError, match="tor exited at start") as caught:
        await publish.start_tor(config, 1, 2)
    assert "NoSuchOptionAnywhere" in str(caught.value)
    assert not (config.data_dir / "tor" / "control").exists()


def test_a_long_data_dir_uses_a_control_port_instead_of_a_socket(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    config = Config(server=ServerConfig(data_dir=str(deep)))
    text = backends.LaunchBackend(config).torrc()
    assert "ControlSocket" not in text  # AF_UNIX paths end at 108 bytes
    assert "ControlPort 127.0.0.1:auto" in text and f"ControlPortWriteToFile {deep / 'tor' / 'control.port'}" in text
    assert "ControlSocket" in backends.LaunchBackend(make_config(tmp_path)).torrc()
