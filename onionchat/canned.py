"""Canned replies managed by admins, per language, stored atomically with mode 0600."""

from __future__ import annotations

import secrets
import threading
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from onionchat import storage
from onionchat.errors import OnionchatError, StorageError
from onionchat.i18n import VISITOR_LANGUAGES

CANNED_FILE = "canned.json"
TITLE_MAX = 80
TEXT_MAX = 2000  # one chat message's default limit: a canned reply must fit in one message
REPLIES_MAX = 500


class CannedError(OnionchatError):
    """A canned-reply change was refused; the message says why."""


@dataclass(frozen=True, slots=True)
class CannedReply:
    """One ready-made reply in one language."""

    id: str
    lang: str
    title: str
    text: str


def _checked(lang: str, title: str, text: str) -> tuple[str, str, str]:
    title, text = title.strip(), text.strip()
    if lang not in VISITOR_LANGUAGES:  # replies are written in the visitor's language
        raise CannedError("choose one of the listed languages")
    if not title or len(title) > TITLE_MAX:
        raise CannedError(f"a title has 1 to {TITLE_MAX} characters")
    if not text or len(text) > TEXT_MAX:
        raise CannedError(f"a reply has 1 to {TEXT_MAX} characters")
    return lang, title, text


class CannedReplies:
    """All canned replies; every change is written at once, atomically.

    Changes replace the dict rather than editing it, so the event loop always reads a whole
    state while a worker thread writes the file.
    """

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / CANNED_FILE
        self._lock = threading.Lock()
        self._replies: dict[str, CannedReply] = self._load()

    def _load(self) -> dict[str, CannedReply]:
        raw = storage.read_json(self.path, {"replies": []})
        try:
            replies = [CannedReply(id=str(r["id"]), lang=str(r["lang"]), title=str(r["title"]),
                                   text=str(r["text"])) for r in raw["replies"]]
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise StorageError(f"{self.path} is damaged: {exc}") from None
        return {r.id: r for r in replies}

    def _commit(self, replies: dict[str, CannedReply]) -> None:
        data: dict[str, Any] = {"version": 1, "replies": [asdict(r) for r in self._sorted(replies.values())]}
        storage.write_json(self.path, data)
        self._replies = replies

    @staticmethod
    def _sorted(replies: Any) -> list[CannedReply]:
        return sorted(replies, key=lambda r: (r.lang, r.title.casefold(), r.id))

    def all(self) -> list[CannedReply]:
        """Every reply, by language and title."""
        return self._sorted(self._replies.values())

    def for_language(self, lang: str) -> list[CannedReply]:
        """Replies in ``lang``, by title."""
        return sorted((r for r in self._replies.values() if r.lang == lang), key=lambda r: r.title)

    def get(self, reply_id: str) -> CannedReply | None:
        """One reply by id, or None."""
        return self._replies.get(reply_id)

    def add(self, lang: str, title: str, text: str) -> CannedReply:
        """Add a reply (blocking file write: call it in a worker thread)."""
        lang, title, text = _checked(lang, title, text)
        with self._lock:
            if len(self._replies) >= REPLIES_MAX:
                raise CannedError(f"there can be at most {REPLIES_MAX} canned replies")
            reply = CannedReply(id=secrets.token_hex(6), lang=lang, title=title, text=text)
            self._commit({**self._replies, reply.id: reply})
        return reply

    def update(self, reply_id: str, lang: str, title: str, text: str) -> CannedReply:
        """Change a reply (blocking file write)."""
        lang, title, text = _checked(lang, title, text)
        with self._lock:
            old = self._replies.get(reply_id)
            if old is None:
                raise CannedError("this canned reply no longer exists")
            reply = replace(old, lang=lang, title=title, text=text)
            self._commit({**self._replies, reply_id: reply})
        return reply

    def delete(self, reply_id: str) -> CannedReply:
        """Remove a reply (blocking file write)."""
        with self._lock:
            old = self._replies.get(reply_id)
            if old is None:
                raise CannedError("this canned reply no longer exists")
            self._commit({k: v for k, v in self._replies.items() if k != reply_id})
        return old
