"""Staff accounts: argon2id password hashes and roles, stored atomically with mode 0600."""

from __future__ import annotations

import contextlib
import enum
import re
import threading
from dataclasses import dataclass, replace
from pathlib import Path

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError

from onionchat import storage
from onionchat.errors import AccountError, StorageError

ACCOUNTS_FILE = "accounts.json"
PASSWORD_MAX = 128  # longer passwords are refused before hashing: no hashing-cost DoS
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,31}$")


class Role(enum.Enum):
    """What a staff member may do; each role includes the ones before it."""

    COUNSELLOR = "counsellor"
    SUPERVISOR = "supervisor"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        """Order for 'at least this role' checks."""
        return list(Role).index(self)


def make_hasher() -> PasswordHasher:
    """argon2id with SecureDrop's parameters: 64 MiB, 4 passes, 2 lanes."""
    return PasswordHasher(time_cost=4, memory_cost=65536, parallelism=2, hash_len=32,
                          salt_len=16, type=Type.ID)


@dataclass(frozen=True, slots=True)
class Account:
    """One staff member as stored (no session, no visitor data)."""

    name: str
    role: Role
    password_hash: str
    disabled: bool = False


class AccountStore:
    """The accounts file; every change is written at once, atomically."""

    def __init__(self, data_dir: Path, hasher: PasswordHasher | None = None, password_min: int = 14) -> None:
        self.path = data_dir / ACCOUNTS_FILE
        self.hasher = hasher or make_hasher()
        self.password_min = password_min
        self._lock = threading.Lock()  # verify() runs in worker threads and may rehash
        self._mtime = self._stat()
        self._accounts = self._load()
        # Verifying an unknown name still costs one hash, so timing does not reveal names.
        self._dummy_hash = self.hasher.hash("not a real password, only for timing")

    def _load(self) -> dict[str, Account]:
        raw = storage.read_json(self.path, {"accounts": {}})
        try:
            entries: dict[str, dict[str, str]] = raw["accounts"]
            return {name: Account(name=name, role=Role(a["role"]), password_hash=str(a["password_hash"]),
                                  disabled=bool(a.get("disabled", False)))
                    for name, a in entries.items()}
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise StorageError(f"{self.path} is damaged: {exc}") from None

    def _save(self) -> None:
        entries = {n: {"role": a.role.value, "password_hash": a.password_hash, "disabled": a.disabled}
                   for n, a in sorted(self._accounts.items())}
        storage.write_json(self.path, {"version": 1, "accounts": entries})
        self._mtime = self._stat()  # our own write is not a change to pick up

    def _stat(self) -> int:
        try:
            return self.path.stat().st_mtime_ns
        except FileNotFoundError:
            return 0

    def reload_if_changed(self) -> bool:
        """Re-read the file if the CLI changed it while the server runs; True if it did."""
        with self._lock:
            mtime = self._stat()
            if mtime == self._mtime:
                return False
            self._accounts = self._load()
            self._mtime = mtime
            return True

    def list(self) -> list[Account]:
        """Every account, by name."""
        return [self._accounts[n] for n in sorted(self._accounts)]

    def get(self, name: str) -> Account | None:
        """The account ``name``, or None."""
        return self._accounts.get(name)

    def check_password(self, password: str) -> None:
        """Refuse passwords that are too short or too long, with a clear reason."""
        if len(password) < self.password_min:
            raise AccountError(f"the password must have at least {self.password_min} characters")
        if len(password) > PASSWORD_MAX:
            raise AccountError(f"the password must have at most {PASSWORD_MAX} characters")

    def add(self, name: str, password: str, role: Role) -> Account:
        """Create an account; refuses a taken or malformed name and a weak password."""
        if not NAME_RE.match(name):
            raise AccountError("a name is 1-32 lower-case letters, digits, '.', '_' or '-', starting "
                               "with a letter or digit")
        self.check_password(password)
        with self._lock:
            if name in self._accounts:
                raise AccountError(f"there is already an account named {name}")
            account = Account(name=name, role=role, password_hash=self.hasher.hash(password))
            self._accounts[name] = account
            self._save()
        return account

    def remove(self, name: str) -> None:
        """Delete an account."""
        with self._lock:
            if self._accounts.pop(name, None) is None:
                raise AccountError(f"there is no account named {name}")
            self._save()

    def set_password(self, name: str, password: str) -> None:
        """Replace an account's password."""
        self.check_password(password)
        with self._lock:
            account = self._require(name)
            self._accounts[name] = replace(account, password_hash=self.hasher.hash(password))
            self._save()

    def _require(self, name: str) -> Account:
        account = self._accounts.get(name)
        if account is None:
            raise AccountError(f"there is no account named {name}")
        return account

    def verify(self, name: str, password: str) -> Account | None:
        """The account if ``password`` is right (rehashing it if parameters changed), else None.

        Blocking and CPU-heavy: call it in a worker thread, never on the event loop.
        """
        account = self._accounts.get(name)
        if len(password) > PASSWORD_MAX or account is None:
            with contextlib.suppress(VerificationError):
                self.hasher.verify(self._dummy_hash, password[:PASSWORD_MAX])
            return None
        try:
            self.hasher.verify(account.password_hash, password)
        except (VerificationError, InvalidHashError):
            return None
        if account.disabled:
            return None
        if self.hasher.check_needs_rehash(account.password_hash):
            with self._lock:
                current = self._accounts.get(name)
                if current is not None:
                    self._accounts[name] = replace(current, password_hash=self.hasher.hash(password))
                    self._save()
        return self._accounts.get(name)
