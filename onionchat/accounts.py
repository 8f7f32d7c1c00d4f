"""Staff accounts: argon2id password hashes, roles and TOTP secrets, stored atomically with mode 0600."""

from __future__ import annotations

import contextlib
import enum
import re
import secrets
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError

from onionchat import storage
from onionchat.config import Config
from onionchat.errors import AccountError, StorageError

ACCOUNTS_FILE = "accounts.json"
PASSWORD_MAX = 128  # longer passwords are refused before hashing: no hashing-cost DoS
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,31}$")
MAX_CHATS_RANGE = (1, 50)  # the same bounds as the staff.max_chats setting


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
    totp_secret: str = ""  # base32; empty while two-factor login is not set up
    totp_step: int = 0  # last accepted TOTP time-step: it and every earlier one are refused
    max_chats: int | None = None  # None: the staff.max_chats setting applies
    # Grows with every change after which the account's sessions must sign in again (password,
    # 2FA reset, role, disabling): a session remembers it at login and ends when it differs.
    # In the file, so a change made with the command line reaches the running server too.
    generation: int = 0

    @property
    def has_totp(self) -> bool:
        """True once two-factor login is set up."""
        return bool(self.totp_secret)


def effective_max_chats(account: Account, config: Config) -> int:
    """How many chats ``account`` may hold at once: its own limit, else the configured one."""
    return account.max_chats if account.max_chats is not None else config.staff.max_chats


def _active_admins(accounts: dict[str, Account]) -> int:
    return sum(1 for a in accounts.values() if a.role is Role.ADMIN and not a.disabled)


class AccountStore:
    """The accounts file; every change is written at once, atomically."""

    def __init__(self, data_dir: Path, hasher: PasswordHasher | None = None, password_min: int = 14) -> None:
        self.path = data_dir / ACCOUNTS_FILE
        self.hasher = hasher or make_hasher()
        self.password_min = password_min
        self._lock = threading.Lock()  # verify() runs in worker threads and may rehash
        self._mtime = self._stat()
        self._accounts = self._load()
        # Verifying an unknown name still costs one hash, so timing does not reveal names. Made by
        # prepare() when the server starts (in a worker thread), else at the first verify().
        self._dummy_hash = ""

    def _load(self) -> dict[str, Account]:
        raw = storage.read_json(self.path, {"accounts": {}})
        try:
            entries: dict[str, dict[str, Any]] = raw["accounts"]
            accounts = {}
            for name, a in entries.items():
                limit = a.get("max_chats")
                accounts[name] = Account(
                    name=name, role=Role(a["role"]), password_hash=str(a["password_hash"]),
                    disabled=bool(a.get("disabled", False)), totp_secret=str(a.get("totp_secret", "")),
                    totp_step=int(a.get("totp_step", 0)), max_chats=None if limit is None else int(limit),
                    generation=int(a.get("generation", 0)))
            return accounts
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise StorageError(f"{self.path} is damaged: {exc}") from None

    def _save(self) -> None:
        entries: dict[str, dict[str, Any]] = {}
        for n, a in sorted(self._accounts.items()):
            entry: dict[str, Any] = {"role": a.role.value, "password_hash": a.password_hash, "disabled": a.disabled}
            if a.totp_secret:
                # The last used step is stored so that a restart does not reopen a used code's window.
                entry.update(totp_secret=a.totp_secret, totp_step=a.totp_step)
            if a.max_chats is not None:
                entry["max_chats"] = a.max_chats
            if a.generation:
                entry["generation"] = a.generation
            entries[n] = entry
        storage.write_json(self.path, {"version": 1, "accounts": entries})
        self._mtime = self._stat()  # our own write is not a change to pick up

    def _commit(self, accounts: dict[str, Account]) -> None:
        """Replace the accounts with ``accounts`` and save; the caller holds the lock.

        Refuses a change that would leave no active admin where there was one, so nobody can
        lock the team out of the admin pages (the CLI can always add one again).
        """
        if _active_admins(self._accounts) and not _active_admins(accounts):
            raise AccountError("this would leave no active admin: make another account admin first")
        # A new dict rather than changes in place: readers on the event loop never see half a change.
        self._accounts = accounts
        self._save()

    def _change(self, name: str, *, sign_out: bool = False, **changes: Any) -> Account:
        """Change fields of one account and save; ``sign_out``: its sessions must sign in again."""
        with self._lock:
            account = self._require(name)
            if sign_out:
                changes["generation"] = account.generation + 1
            account = replace(account, **changes)
            self._commit({**self._accounts, name: account})
        return account

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

    def all(self) -> list[Account]:
        """Every account, by name."""
        return [self._accounts[n] for n in sorted(self._accounts)]

    def get(self, name: str) -> Account | None:
        """The account ``name``, or None."""
        return self._accounts.get(name)

    def signed_in(self, name: str, generation: int) -> Account | None:
        """The account a session signed in as ``name`` at ``generation`` may still act as, else None.

        None when the account is gone or disabled, or changed since (password, 2FA reset, role).
        """
        account = self._accounts.get(name)
        if account is None or account.disabled or account.generation != generation:
            return None
        return account

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
            self._commit({**self._accounts, name: account})
        return account

    def remove(self, name: str) -> None:
        """Delete an account."""
        with self._lock:
            self._require(name)
            self._commit({n: a for n, a in self._accounts.items() if n != name})

    def set_password(self, name: str, password: str) -> Account:
        """Replace an account's password; every session of it must sign in again."""
        self.check_password(password)
        self._require(name)
        password_hash = self.hasher.hash(password)  # outside the lock: hashing is slow
        return self._change(name, sign_out=True, password_hash=password_hash)

    def set_disabled(self, name: str, *, disabled: bool) -> Account:
        """Disable an account (it cannot log in, its sessions end) or enable it again."""
        return self._change(name, sign_out=True, disabled=disabled)

    def set_role(self, name: str, role: Role) -> Account:
        """Give an account another role; its sessions sign in again with it."""
        return self._change(name, sign_out=True, role=role)

    def set_max_chats(self, name: str, limit: int | None) -> Account:
        """Set the account's own limit of chats held at once; None: the configured default."""
        lo, hi = MAX_CHATS_RANGE
        if limit is not None and not lo <= limit <= hi:
            raise AccountError(f"the chat limit must be between {lo} and {hi}")
        return self._change(name, max_chats=limit)

    def enable_totp(self, name: str, secret: str, step: int) -> Account:
        """Turn on two-factor login with ``secret``; ``step`` (the confirming code's) is used up."""
        return self._change(name, totp_secret=secret, totp_step=step)

    def reset_totp(self, name: str) -> Account:
        """Turn two-factor login off (the admin's reset: the person enrols again, after signing in again)."""
        return self._change(name, sign_out=True, totp_secret="", totp_step=0)

    def use_totp_step(self, name: str, step: int) -> bool:
        """Mark TOTP time-step ``step`` used; False if it or a later one was used already.

        Writes the file (blocking): call it in a worker thread.
        """
        with self._lock:
            account = self._accounts.get(name)
            if account is None or not account.totp_secret or step <= account.totp_step:
                return False
            self._commit({**self._accounts, name: replace(account, totp_step=step)})
            return True

    def _require(self, name: str) -> Account:
        account = self._accounts.get(name)
        if account is None:
            raise AccountError(f"there is no account named {name}")
        return account

    def prepare(self) -> None:
        """Make the hash that unknown names are checked against (blocking: ~0.1 s of CPU)."""
        if not self._dummy_hash:  # a login racing the start-up may make one too: harmless
            self._dummy_hash = self.hasher.hash(secrets.token_urlsafe(24))

    def verify(self, name: str, password: str) -> Account | None:
        """The account if ``password`` is right (rehashing it if parameters changed), else None.

        Blocking and CPU-heavy: call it in a worker thread, never on the event loop. An unknown
        name, a disabled account and a wrong password cost the same one hash.
        """
        self.prepare()  # before looking at the name: a first call costs the same for every name
        account = self._accounts.get(name)
        if len(password) > PASSWORD_MAX or account is None:
            with contextlib.suppress(VerificationError, InvalidHashError):
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
                    new = replace(current, password_hash=self.hasher.hash(password))
                    self._commit({**self._accounts, name: new})
        return self._accounts.get(name)
