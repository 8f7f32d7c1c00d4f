"""The audit log of staff actions: who did what and when, never message text or visitor data."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from onionchat import storage
from onionchat.chat import ChatEvent
from onionchat.errors import StorageError

log = logging.getLogger("onionchat.audit")

AUDIT_FILE = "audit.json"
MAX_ENTRIES = 200_000  # a hard bound on memory and file size whatever happens
DETAIL_MAX = 80

# action -> what the admin page calls it
LABELS: dict[str, str] = {
    "login": "logged in", "login_failed": "failed login", "logout": "logged out",
    "account_added": "added account", "account_removed": "removed account",
    "account_disabled": "disabled account", "account_enabled": "enabled account",
    "password_reset": "reset password", "password_changed": "changed own password",
    "role_set": "set role", "max_chats_set": "set chat limit",
    "2fa_enrolled": "set up 2FA", "2fa_reset": "reset 2FA",
    "canned_added": "added canned reply", "canned_changed": "changed canned reply",
    "canned_deleted": "deleted canned reply",
    "accepted": "accepted chat", "transferred": "transferred chat", "requeued": "returned chat to queue",
    "urgent": "marked chat urgent", "ended": "ended chat", "blocked": "blocked visitor", "joined": "joined chat",
}


def minute(at: float) -> int:
    """``at`` rounded down to the minute: enough for an audit, less to correlate with traffic."""
    return int(at) // 60 * 60


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One staff action. ``chat`` is a conversation's short-lived id, nothing more."""

    at: float
    who: str
    action: str
    chat: str = ""
    detail: str = ""

    @property
    def when(self) -> str:
        """UTC date and time to the minute."""
        return time.strftime("%Y-%m-%d %H:%M", time.gmtime(self.at))

    @property
    def label(self) -> str:
        """The action in words."""
        return LABELS.get(self.action, self.action)


class AuditLog:
    """Staff actions, kept ``retention_days`` days in the data directory."""

    def __init__(self, data_dir: Path, retention_days: int) -> None:
        self.path = data_dir / AUDIT_FILE
        self.retention_days = retention_days
        self._write_lock = threading.Lock()  # one writer at a time, whichever thread flushes
        self._entries: list[AuditEntry] = self._load()
        self._dirty = False

    def _load(self) -> list[AuditEntry]:
        raw = storage.read_json(self.path, {"entries": []})
        try:
            entries = [AuditEntry(at=float(e["at"]), who=str(e["who"]), action=str(e["action"]),
                                  chat=str(e.get("chat", "")), detail=str(e.get("detail", "")))
                       for e in raw["entries"]]
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise StorageError(f"{self.path} is damaged: {exc}") from None
        return self._kept(entries)

    def _kept(self, entries: list[AuditEntry]) -> list[AuditEntry]:
        cutoff = time.time() - self.retention_days * 86400
        kept = [e for e in entries if e.at >= cutoff]
        return kept[-MAX_ENTRIES:]

    def record(self, who: str, action: str, chat: str = "", detail: str = "") -> None:
        """Note one action (cheap, on the event loop; the file is written by flush)."""
        entry = AuditEntry(at=minute(time.time()), who=who, action=action, chat=chat, detail=detail[:DETAIL_MAX])
        self._entries.append(entry)
        if len(self._entries) > MAX_ENTRIES:
            del self._entries[:len(self._entries) - MAX_ENTRIES]
        self._dirty = True

    def on_event(self, event: ChatEvent) -> None:
        """Record the staff actions among chat events (accept, transfer, end, block, urgent).

        Only the kind, the actor, the short-lived id and the end reason or the colleague who
        took over are taken: a ChatEvent carries no text, and nothing else is read.
        """
        if event.actor:
            detail = event.end_reason.value if event.end_reason is not None else event.target
            self.record(event.actor, event.kind.value, chat=event.conversation, detail=detail)

    def entries(self) -> list[AuditEntry]:
        """Every kept entry, newest first."""
        return list(reversed(self._kept(self._entries)))

    def _write(self, entries: list[AuditEntry]) -> None:
        with self._write_lock:
            storage.write_json(self.path, {"version": 1, "entries": [asdict(e) for e in entries]})

    async def flush(self) -> None:
        """Drop expired entries and write the file off the event loop, if anything changed."""
        if not self._dirty:
            return
        self._entries = self._kept(self._entries)
        self._dirty = False
        snapshot = list(self._entries)
        try:
            await asyncio.to_thread(self._write, snapshot)
        except StorageError as exc:
            self._dirty = True  # try again at the next flush
            log.error("cannot write the audit log: %s", exc)

