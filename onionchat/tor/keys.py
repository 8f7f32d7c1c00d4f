"""Onion service keys (stable addresses) and staff client-authorization keys, stored mode 0600.

Files, all under ``<data_dir>/onion/`` — back up this whole directory:

- ``visitor.key``, ``staff.key``: the onion services' ed25519 private keys (JSON: the address
  and tor's ``ED25519-V3:...`` key blob). Whoever holds one can impersonate that address;
  losing one changes the address for good.
- ``staff-clients.json``: the x25519 *public* keys allowed to reach the staff onion, by
  label. Private keys are printed once by ``staff-key add`` and never stored here.
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from onionchat import storage
from onionchat.errors import StaffKeyError, StorageError

ONION_DIR = "onion"
VISITOR_KEY = "visitor.key"
STAFF_KEY = "staff.key"
STAFF_CLIENTS = "staff-clients.json"
ONION_RE = re.compile(r"^[a-z2-7]{56}\.onion$")
X25519_B32_RE = re.compile(r"^[A-Z2-7]{52}$")
LABEL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$")
KEY_PREFIX = "ED25519-V3:"


def onion_dir(data_dir: Path) -> Path:
    """Where the key files live."""
    return data_dir / ONION_DIR


def _b32(raw: bytes) -> str:
    return base64.b32encode(raw).decode("ascii").rstrip("=")


def onion_address(public_key: bytes) -> str:
    """The v3 address of an ed25519 public key (rend-spec-v3 §6: key, checksum, version)."""
    version = b"\x03"
    checksum = hashlib.sha3_256(b".onion checksum" + public_key + version).digest()[:2]
    return _b32(public_key + checksum + version).lower() + ".onion"


@dataclass(frozen=True, slots=True)
class OnionKey:
    """One onion service identity: its address and the key blob ADD_ONION takes."""

    address: str  # "xxxx.onion"
    key: str  # "ED25519-V3:<base64 of the 64-byte expanded secret key>"

    @property
    def service_id(self) -> str:
        """The address without ".onion", as tor's control protocol names it."""
        return self.address.removesuffix(".onion")


def new_onion_key() -> OnionKey:
    """A fresh identity, made here so its address is known before tor ever runs."""
    seed = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())
    public = Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    # tor wants the expanded key (ref10): SHA-512 of the seed with the scalar half clamped.
    digest = bytearray(hashlib.sha512(seed).digest())
    digest[0] &= 248
    digest[31] &= 127
    digest[31] |= 64
    return OnionKey(address=onion_address(public), key=KEY_PREFIX + base64.b64encode(bytes(digest)).decode())


def read_onion_key(path: Path) -> OnionKey | None:
    """The key stored at ``path``; None if there is none yet."""
    raw = storage.read_json(path, None)
    if raw is None:
        return None
    try:
        address, key = str(raw["address"]), str(raw["key"])
        blob = base64.b64decode(key.removeprefix(KEY_PREFIX), validate=True)
    except (KeyError, TypeError, ValueError) as exc:
        raise StorageError(f"{path} is damaged: {exc}") from None
    if not ONION_RE.match(address) or not key.startswith(KEY_PREFIX) or len(blob) != 64:
        raise StorageError(f"{path} is damaged: not an onion address and ed25519 key")
    return OnionKey(address=address, key=key)


def load_or_create(path: Path) -> OnionKey:
    """The key at ``path``, created (mode 0600) on first use so the address never changes."""
    existing = read_onion_key(path)
    if existing is not None:
        return existing
    fresh = new_onion_key()
    storage.write_json(path, {"version": 1, "address": fresh.address, "key": fresh.key})
    return fresh


@dataclass(frozen=True, slots=True)
class ServiceKeys:
    """Both onion identities."""

    visitor: OnionKey
    staff: OnionKey


def service_keys(data_dir: Path) -> ServiceKeys:
    """Both identities, created on first use."""
    directory = onion_dir(data_dir)
    return ServiceKeys(visitor=load_or_create(directory / VISITOR_KEY),
                       staff=load_or_create(directory / STAFF_KEY))


# -- staff client authorization (x25519) ----------------------------------------------


@dataclass(frozen=True, slots=True)
class ClientKeyPair:
    """A new staff client key; only ``public`` is ever stored."""

    private: str  # base32, what Tor Browser's "key" prompt takes
    public: str  # base32, what ADD_ONION's ClientAuthV3= takes


def new_client_keypair() -> ClientKeyPair:
    """A fresh x25519 key pair in tor's base32 form."""
    private = X25519PrivateKey.generate()
    raw_private = private.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                        serialization.NoEncryption())
    raw_public = private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return ClientKeyPair(private=_b32(raw_private), public=_b32(raw_public))


def auth_private_line(staff_address: str, private_b32: str) -> str:
    """The line of a client's ``ClientOnionAuthDir/<name>.auth_private`` file."""
    return f"{staff_address.removesuffix('.onion')}:descriptor:x25519:{private_b32}"


def auth_server_line(public_b32: str) -> str:
    """The line of a torrc-mode ``HiddenServiceDir/authorized_clients/<label>.auth`` file."""
    return f"descriptor:x25519:{public_b32}"


class StaffClientKeys:
    """The staff-clients.json file: label -> x25519 public key; every change written at once."""

    def __init__(self, data_dir: Path) -> None:
        self.path = onion_dir(data_dir) / STAFF_CLIENTS

    def load(self) -> dict[str, str]:
        """Every key by label (empty when the file does not exist yet)."""
        raw = storage.read_json(self.path, {"clients": {}})
        try:
            clients = {str(k): str(v) for k, v in raw["clients"].items()}
        except (KeyError, TypeError, AttributeError) as exc:
            raise StorageError(f"{self.path} is damaged: {exc}") from None
        for label, public in clients.items():
            if not X25519_B32_RE.match(public):
                raise StorageError(f"{self.path} is damaged: the key of {label!r} is not a base32 x25519 key")
        return clients

    def _save(self, clients: dict[str, str]) -> None:
        storage.write_json(self.path, {"version": 1, "clients": dict(sorted(clients.items()))})

    def add(self, label: str) -> ClientKeyPair:
        """Create a key pair for ``label``, store its public half, return both halves."""
        if not LABEL_RE.match(label):
            raise StaffKeyError("a label is 1-32 letters, digits, '.', '_' or '-', starting with a letter or digit")
        clients = self.load()
        if label in clients:
            raise StaffKeyError(f"there is already a staff key labelled {label}")
        pair = new_client_keypair()
        clients[label] = pair.public
        self._save(clients)
        return pair

    def remove(self, label: str) -> None:
        """Revoke the key labelled ``label``."""
        clients = self.load()
        if clients.pop(label, None) is None:
            raise StaffKeyError(f"there is no staff key labelled {label}")
        self._save(clients)

    def fingerprint(self) -> tuple[int, int] | None:
        """Cheap change detector for the watchdog: (mtime_ns, size), None if absent."""
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StorageError(f"cannot read {self.path}: {exc.strerror}") from None
        return (st.st_mtime_ns, st.st_size)
