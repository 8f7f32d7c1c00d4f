"""Canned replies managed by admins, per language, stored atomically with mode 0600."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

CANNED_FILE = "canned.json"


@dataclass(frozen=True, slots=True)
class CannedReply:
    """One ready-made reply in one language."""

    id: str
    lang: str
    title: str
    text: str


class CannedReplies:
    """All canned replies."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / CANNED_FILE
        self._replies: dict[str, CannedReply] = {}

    def for_language(self, lang: str) -> list[CannedReply]:
        """Replies in ``lang``, by title."""
        return sorted((r for r in self._replies.values() if r.lang == lang), key=lambda r: r.title)

    def get(self, reply_id: str) -> CannedReply | None:
        """One reply by id, or None."""
        return self._replies.get(reply_id)
