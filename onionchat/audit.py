"""The audit log of staff actions: who did what and when, never message text or visitor data."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from onionchat.chat import ChatEvent

AUDIT_FILE = "audit.json"


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One staff action. ``chat`` is a conversation's short-lived id, nothing more."""

    at: float
    who: str
    action: str
    chat: str = ""
    detail: str = ""


class AuditLog:
    """Staff actions, kept ``retention_days`` days in the data directory."""

    def __init__(self, data_dir: Path, retention_days: int) -> None:
        self.path = data_dir / AUDIT_FILE
        self.retention_days = retention_days
        self._entries: list[AuditEntry] = []

    def record(self, who: str, action: str, chat: str = "", detail: str = "") -> None:
        """Note one action (cheap; persistence happens in flush)."""
        self._entries.append(AuditEntry(at=time.time(), who=who, action=action, chat=chat, detail=detail))

    def on_event(self, event: ChatEvent) -> None:
        """Record the staff actions among chat events (accept, transfer, end, block, urgent)."""
        if event.actor:
            self.record(event.actor, event.kind, chat=event.conversation, detail=event.reason)

    def entries(self) -> list[AuditEntry]:
        """Every kept entry, newest first."""
        return list(reversed(self._entries))
