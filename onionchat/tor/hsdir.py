"""Launch mode's onion services as HiddenServiceDir blocks, so that tor tells us each visitor's circuit.

Only a service configured by ``HiddenServiceDir`` lines can carry
``HiddenServiceExportCircuitID haproxy`` (ADD_ONION has no such option, checked on tor
0.4.9.11): so the tor onionchat launches gets the two services in its torrc, and a
``SETCONF`` of the same lines when the staff keys change.

The keys stay where they always were, ``<data_dir>/onion/*.key`` (JSON: back up that
directory); the service directories ``<data_dir>/tor/hs/{visitor,staff}/`` are derived from
them at every launch, so an existing installation keeps its addresses::

    hs_ed25519_secret_key      tor's key file: a 32-byte header and our 64-byte expanded key
    authorized_clients/*.auth  staff only: one "descriptor:x25519:<public key>" per staff key

Tor writes ``hostname`` and ``hs_ed25519_public_key`` itself; both are removed before a launch
(a stale public key of another key makes tor exit), and ``hostname`` is compared with the
address we expect once tor runs.
"""

from __future__ import annotations

import base64
import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from onionchat import storage
from onionchat.errors import StorageError, TorPublishError
from onionchat.tor.keys import KEY_PREFIX, LABEL_RE, X25519_B32_RE, OnionKey, ServiceKeys, auth_server_line

HS_DIR: Final = "hs"
SECRET_KEY_FILE: Final = "hs_ed25519_secret_key"  # noqa: S105 - a file name
# "== ed25519v1-secret: type0 ==" padded with NULs to 32 bytes (tor's crypto_write_tagged_contents_to_file).
SECRET_KEY_HEADER: Final = b"== ed25519v1-secret: type0 ==\x00\x00\x00"
DERIVED_FILES: Final = ("hs_ed25519_public_key", "hostname")
AUTH_DIR: Final = "authorized_clients"


def secret_key_file(key: OnionKey) -> bytes:
    """The bytes of tor's ``hs_ed25519_secret_key`` for ``key`` (the same 64 bytes ADD_ONION takes)."""
    raw = base64.b64decode(key.key.removeprefix(KEY_PREFIX), validate=True)
    if len(raw) != 64:
        raise StorageError(f"the key of {key.address} is not a 64-byte ed25519 key")
    return SECRET_KEY_HEADER + raw


def _quote(value: str) -> str:
    """A torrc/SETCONF value in double quotes (paths may hold spaces)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass(frozen=True, slots=True)
class ServiceDir:
    """One onion service: its directory, key, local target, and staff client keys (None: open)."""

    name: str
    path: Path
    key: OnionKey
    target: str  # "127.0.0.1:8080"
    clients: dict[str, str] | None  # label -> x25519 public key; None: no client authorization


class ServiceDirs:
    """Both services of launch mode: their files, their torrc lines and their SETCONF."""

    def __init__(self, tor_dir: Path, keys: ServiceKeys, visitor_target: str, staff_target: str, *,
                 pow_defense: bool, max_streams: int) -> None:
        self.root = tor_dir / HS_DIR
        self.keys = keys
        self.visitor_target = visitor_target
        self.staff_target = staff_target
        self.pow_defense = pow_defense
        self.max_streams = max_streams

    def services(self, staff_clients: dict[str, str] | None, staff_published: bool) -> list[ServiceDir]:
        """The services to publish: the visitor's always, the staff's when ``staff_published``."""
        published = [ServiceDir("visitor", self.root / "visitor", self.keys.visitor, self.visitor_target, None)]
        if staff_published:
            published.append(ServiceDir("staff", self.root / "staff", self.keys.staff, self.staff_target,
                                        staff_clients))
        return published

    def prepare(self, services: list[ServiceDir]) -> None:
        """Write every service's key file and client keys, and remove what tor derives (before a launch)."""
        storage.ensure_dir(self.root)
        for service in services:
            storage.ensure_dir(service.path)
            storage.write_atomic(service.path / SECRET_KEY_FILE, secret_key_file(service.key))
            for name in DERIVED_FILES:
                (service.path / name).unlink(missing_ok=True)
            self.write_clients(service)

    def write_clients(self, service: ServiceDir) -> None:
        """Make ``authorized_clients/`` hold exactly the service's client keys (none for an open service)."""
        auth = storage.ensure_dir(service.path / AUTH_DIR)
        wanted = {}
        for label, public in (service.clients or {}).items():
            # Checked again here: tor ignores a malformed line, and a staff onion whose only
            # lines are malformed would be published open to everyone.
            if not LABEL_RE.match(label) or not X25519_B32_RE.match(public):
                raise StorageError(f"staff key {label!r} is not a valid label and x25519 key")
            wanted[f"{label}.auth"] = (auth_server_line(public) + "\n").encode()
        for stale in auth.glob("*.auth"):
            if stale.name not in wanted:
                with contextlib.suppress(FileNotFoundError):
                    stale.unlink()
        for name, line in wanted.items():
            path = auth / name
            if not path.exists() or path.read_bytes() != line:
                storage.write_atomic(path, line)

    def options(self, services: list[ServiceDir]) -> list[tuple[str, str]]:
        """The onion-service options of ``services``, in order (HiddenServiceDir starts each block)."""
        options: list[tuple[str, str]] = []
        for service in services:
            options += [("HiddenServiceDir", str(service.path)), ("HiddenServicePort", f"80 {service.target}"),
                        # Each connection then starts with a PROXY line naming its circuit (web/proxy.py).
                        ("HiddenServiceExportCircuitID", "haproxy")]
            if self.pow_defense:
                options.append(("HiddenServicePoWDefensesEnabled", "1"))
            if self.max_streams:
                # Closing the circuit of a client that opens too many streams is tor's advice against floods.
                options += [("HiddenServiceMaxStreams", str(self.max_streams)),
                            ("HiddenServiceMaxStreamsCloseCircuit", "1")]
        return options

    def torrc_lines(self, services: list[ServiceDir]) -> list[str]:
        """The torrc lines for ``services``."""
        return [f"{name} {_quote(value) if name == 'HiddenServiceDir' else value}"
                for name, value in self.options(services)]

    def setconf(self, services: list[ServiceDir]) -> str:
        """The SETCONF that makes a running tor publish exactly ``services`` (all others are withdrawn)."""
        return "SETCONF " + " ".join(f"{name}={_quote(value)}" for name, value in self.options(services))

    def check_hostnames(self, services: list[ServiceDir]) -> None:
        """Refuse to go on if tor publishes another address than our key's (a key file went wrong)."""
        for service in services:
            path = service.path / "hostname"
            try:
                found = path.read_text(encoding="ascii").strip()
            except (OSError, UnicodeDecodeError) as exc:
                raise TorPublishError(f"tor did not write {path}: {exc}") from None
            if found != service.key.address:
                raise TorPublishError(f"tor publishes the {service.name} onion as {found}, but its key in "
                                      f"{service.name}.key says {service.key.address}: the key file is damaged")
