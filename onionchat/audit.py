"""The audit log of staff actions: who did what and when, never message text or visitor data."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from onionchat import storage
from onionchat.chat import ChatEvent, EventKind
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


# Actions on chats: kept without the chat's id once it is over, and only to the hour, so that
# the stored log does not tell when each chat happened.
CHAT_ACTIONS = frozenset({"accepted", "transferred", "requeued", "urgent", "ended", "blocked", "joined"})
MINUTE, HOUR = 60, 3600


def rounded(at: float, precision: int = MINUTE) -> int:
    """``at`` rounded down to ``precision`` seconds: enough for an audit, less to correlate with traffic."""
    return int(at) // precision * precision


@dataclass(slots=True)
class ChatRef:
    """A live chat's id, shared by its entries: emptied once when the chat ends, whatever their number."""

    id: str


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One staff action. ``ref`` holds a chat's short-lived id while the chat lasts; nothing more."""

    at: float
    who: str
    action: str
    ref: ChatRef | None = None
    detail: str = ""
    precision: int = MINUTE  # seconds: MINUTE, or HOUR for actions on chats

    @property
    def chat(self) -> str:
        """The chat's id while it lasts (or kept, with staff.audit_chat_ids); else ''."""
        return self.ref.id if self.ref is not None else ""

    @property
    def when(self) -> str:
        """UTC date and time, to the minute or as the hour it fell in."""
        if self.precision >= HOUR:
            start = time.gmtime(self.at)
            end = time.gmtime(self.at + HOUR)
            return time.strftime("%Y-%m-%d %H:00", start) + time.strftime("–%H:00", end)
        return time.strftime("%Y-%m-%d %H:%M", time.gmtime(self.at))

    @property
    def label(self) -> str:
        """The action in words."""
        return LABELS.get(self.action, self.action)

    def stored(self) -> dict[str, object]:
        """The entry as the file keeps it."""
        return {"at": self.at, "who": self.who, "action": self.action, "chat": self.chat, "detail": self.detail,
                "precision": self.precision}


class AuditLog:
    """Staff actions, kept ``retention_days`` days in the data directory.

    ``keep_chat_ids``: keep a chat's id after it ended (default: removed at the end);
    ``chat_time``: "hour" (default) or "minute", how exactly actions on chats are timed.
    """

    def __init__(self, data_dir: Path, retention_days: int, *, keep_chat_ids: bool = False,
                 chat_time: str = "hour") -> None:
        self.path = data_dir / AUDIT_FILE
        self.retention_days = retention_days
        self.keep_chat_ids = keep_chat_ids
        self.chat_precision = HOUR if chat_time == "hour" else MINUTE
        self._write_lock = threading.Lock()  # one writer at a time, whichever thread flushes
        self._live: dict[str, ChatRef] = {}  # chat id -> the ref its entries share, while it lasts
        self._dirty = False
        self._entries: list[AuditEntry] = self._load()

    def _load(self) -> list[AuditEntry]:
        raw = storage.read_json(self.path, {"entries": []})
        try:
            entries = [self._stored_entry(e) for e in raw["entries"]]
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise StorageError(f"{self.path} is damaged: {exc}") from None
        return self._kept(entries)

    def _stored_entry(self, e: Any) -> AuditEntry:
        """An entry from the file, made as private as the settings say (files of older versions too).

        Every chat is over after a restart: its id goes, and actions on chats keep only their hour.
        """
        at, action, chat = float(e["at"]), str(e["action"]), str(e.get("chat", ""))
        precision = int(e.get("precision", MINUTE))
        if action in CHAT_ACTIONS and precision < self.chat_precision:
            at, precision = rounded(at, self.chat_precision), self.chat_precision
            self._dirty = True
        if chat and not self.keep_chat_ids:
            chat = ""
            self._dirty = True
        return AuditEntry(at=at, who=str(e["who"]), action=action, ref=ChatRef(chat) if chat else None,
                          detail=str(e.get("detail", "")), precision=precision)

    def _kept(self, entries: list[AuditEntry]) -> list[AuditEntry]:
        cutoff = time.time() - self.retention_days * 86400
        kept = [e for e in entries if e.at >= cutoff]
        return kept[-MAX_ENTRIES:]

    def record(self, who: str, action: str, chat: str = "", detail: str = "") -> None:
        """Note one action (cheap, on the event loop; the file is written by flush)."""
        precision = self.chat_precision if action in CHAT_ACTIONS or chat else MINUTE
        ref = self._live.setdefault(chat, ChatRef(chat)) if chat else None
        entry = AuditEntry(at=rounded(time.time(), precision), who=who, action=action, ref=ref,
                           detail=detail[:DETAIL_MAX], precision=precision)
        self._entries.append(entry)
        if len(self._entries) > MAX_ENTRIES:
            del self._entries[:len(self._entries) - MAX_ENTRIES]
        self._dirty = True

    def on_event(self, event: ChatEvent) -> None:
        """Record the staff actions among chat events (accept, transfer, end, block, urgent).

        Only the kind, the actor, the short-lived id and the end reason or the colleague who
        took over are taken: a ChatEvent carries no text, and nothing else is read. When a chat
        ends, however it ends, its id leaves every entry (unless staff.audit_chat_ids).
        """
        if event.actor:
            detail = event.end_reason.value if event.end_reason is not None else event.target or (
                str(event.count) if event.count else "")
            self.record(event.actor, event.kind.value, chat=event.conversation, detail=detail)
        if event.kind is EventKind.ENDED:
            ref = self._live.pop(event.conversation, None)
            if ref is not None and not self.keep_chat_ids:
                ref.id = ""
                self._dirty = True

    def entries(self) -> list[AuditEntry]:
        """Every kept entry, newest first."""
        return list(reversed(self._kept(self._entries)))

    def _write(self, entries: list[dict[str, object]]) -> None:
        with self._write_lock:
            storage.write_json(self.path, {"version": 2, "entries": entries})

    async def flush(self) -> None:
        """Drop expired entries and write the file off the event loop, if anything changed."""
        if not self._dirty:
            return
        self._entries = self._kept(self._entries)
        self._dirty = False
        snapshot = [e.stored() for e in self._entries]  # on the loop: ids emptied later stay out of it
        try:
            await asyncio.to_thread(self._write, snapshot)
        except StorageError as exc:
            self._dirty = True  # try again at the next flush
            log.error("cannot write the audit log: %s", exc)
