"""Talking to tor's control port: connect, authenticate, wait for bootstrap, add and remove onions."""

from __future__ import annotations

import contextlib
import logging
import queue
import re
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import stem
import stem.connection
import stem.control
import stem.response

from onionchat.errors import (
    TorAuthError,
    TorBootstrapTimeout,
    TorError,
    TorPermissionDenied,
    TorPublishError,
)
from onionchat.tor.keys import OnionKey

log = logging.getLogger("onionchat.tor")

Progress = Callable[[int, str], None]

_BOOTSTRAP_RE = re.compile(r'PROGRESS=(\d+).*?SUMMARY="([^"]*)"')


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


def setconf(controller: ControllerLike, command: str) -> None:
    """Send a SETCONF; TorPublishError with tor's answer when it is refused."""
    response = controller.msg(command)
    if not response.is_ok():
        raise TorPublishError(f"tor refused the onion services' configuration: {_reply_text(response)}")


def close_circuits(controller: ControllerLike, circuits: set[str], service_id: str) -> int:
    """CLOSECIRCUIT each of ``circuits`` that is a rendezvous circuit of ``service_id``; how many were closed.

    Ids come from PROXY lines on a local port: any local process could write one. So only a
    circuit tor lists as one of our visitor onion's rendezvous circuits is closed, never an
    introduction or directory circuit of the same number.
    """
    ours = set()
    for line in str(controller.get_info("circuit-status")).splitlines():
        fields = line.split()
        if (fields and "PURPOSE=HS_SERVICE_REND" in fields
                and f"REND_QUERY={service_id}" in fields):
            ours.add(fields[0])
    closed = 0
    for circuit in sorted(circuits & ours):
        if controller.msg(f"CLOSECIRCUIT {circuit}").is_ok():
            closed += 1
    return closed


class UploadWatch:
    """Collects HS_DESC events so we can wait for each service's first descriptor upload."""

    def __init__(self) -> None:
        self.events: queue.Queue[Any] = queue.Queue()

    def __call__(self, event: Any) -> None:
        """Stem's event listener: queue the event for wait()."""
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



def connect_port(port: int) -> Any:
    """A stem Controller on tor's control port on loopback; one clear line if nothing answers."""
    try:
        return stem.control.Controller.from_port(address="127.0.0.1", port=port)
    except stem.SocketError as exc:
        raise TorError(f"nothing answers on tor's control port 127.0.0.1:{port} ({exc}): is tor running "
                       "with that ControlPort?") from None


def connect_socket(path: Path) -> Any:
    """A stem Controller on tor's control socket; one clear line for each way it can fail."""
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


def quiet_close(controller: ControllerLike) -> None:
    """Close a controller whose connection may already be gone."""
    with contextlib.suppress(stem.ControllerError, stem.SocketError, OSError):
        controller.close()
