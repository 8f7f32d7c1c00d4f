"""Memory-only sessions and their CSRF tokens; nothing here is ever written anywhere."""

from __future__ import annotations

import hmac
import secrets
import time
from dataclasses import dataclass, field

from onionchat.errors import ErrorCode, LimitReached
from onionchat.throttle import Throttle


@dataclass(slots=True, eq=False)
class Session:
    """One browser's session: a visitor's or a staff member's, never both."""

    id: str
    csrf: str
    last_seen: float
    conversation: str = ""  # visitor: the conversation this browser may read
    passphrase: str = ""  # visitor: shown once on the chat page, then forgotten
    # visitor: the passphrase again after a language switch right after it was shown (it may
    # have been shown in a language the visitor cannot read), until passphrase_until.
    passphrase_again: str = ""
    passphrase_until: float = 0.0
    lang: str = ""  # the language this browser chose on the page; "": the site's default
    staff: str = ""  # staff: the signed-in account name
    available: bool = True  # staff: available for new chats (or away)
    resume_throttle: Throttle = field(default_factory=lambda: Throttle(5, 600.0))

    def csrf_ok(self, token: str) -> bool:
        """Constant-time check of a form's CSRF token."""
        return hmac.compare_digest(self.csrf.encode(), token.encode("utf-8", "surrogateescape"))


class SessionStore:
    """Sessions of one site (visitor or staff), bounded in number and idle time."""

    def __init__(self, limit: int, idle_seconds: float, resume_attempts: int = 5) -> None:
        self.limit = limit
        self.idle_seconds = idle_seconds
        self.resume_attempts = resume_attempts
        self._sessions: dict[str, Session] = {}

    def __len__(self) -> int:
        return len(self._sessions)

    def get(self, sid: str | None) -> Session | None:
        """The live session with id ``sid``, refreshing its idle timer; None if unknown or idle."""
        if not sid:
            return None
        session = self._sessions.get(sid)
        if session is None:
            return None
        now = time.monotonic()
        if now - session.last_seen > self.idle_seconds:
            del self._sessions[sid]
            return None
        session.last_seen = now
        return session

    def create(self) -> Session:
        """A new session; refused with LimitReached when the store is full even after a sweep."""
        if len(self._sessions) >= self.limit:
            self.sweep()
        if len(self._sessions) >= self.limit and not self._evict_idlest_bare():
            raise LimitReached(ErrorCode.BUSY)
        session = Session(id=secrets.token_urlsafe(32), csrf=secrets.token_urlsafe(32),
                          last_seen=time.monotonic(),
                          resume_throttle=Throttle(self.resume_attempts, 600.0))
        self._sessions[session.id] = session
        return session

    def _evict_idlest_bare(self) -> bool:
        """Make room by dropping the longest-unused session that holds no chat and no login.

        A flood of page loads creates sessions; they must never push out someone who is chatting.
        """
        bare = [s for s in self._sessions.values() if not s.conversation and not s.staff]
        if not bare:
            return False
        del self._sessions[min(bare, key=lambda s: s.last_seen).id]
        return True

    def regenerate(self, session: Session) -> Session:
        """Give ``session`` a fresh id and CSRF token (at login: no session fixation)."""
        self._sessions.pop(session.id, None)
        session.id = secrets.token_urlsafe(32)
        session.csrf = secrets.token_urlsafe(32)
        self._sessions[session.id] = session
        return session

    def drop(self, session: Session) -> None:
        """Forget a session."""
        self._sessions.pop(session.id, None)

    def drop_staff(self, name: str, keep: Session | None = None) -> int:
        """Sign ``name`` out everywhere (after a password or 2FA reset), except session ``keep``."""
        gone = [sid for sid, s in self._sessions.items() if s.staff == name and s is not keep]
        for sid in gone:
            del self._sessions[sid]
        return len(gone)

    def sweep(self) -> int:
        """Forget idle sessions; returns how many."""
        now = time.monotonic()
        idle = [sid for sid, s in self._sessions.items() if now - s.last_seen > self.idle_seconds]
        for sid in idle:
            del self._sessions[sid]
        return len(idle)

    def staff_available(self) -> set[str]:
        """Names of signed-in staff who are available for new chats."""
        now = time.monotonic()
        return {s.staff for s in self._sessions.values()
                if s.staff and s.available and now - s.last_seen <= self.idle_seconds}

    def staff_online(self) -> set[str]:
        """Names of staff with a live session (for the wait estimate)."""
        now = time.monotonic()
        return {s.staff for s in self._sessions.values() if s.staff and now - s.last_seen <= self.idle_seconds}
