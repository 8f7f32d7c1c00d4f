"""Memory-only sessions and their CSRF tokens; nothing here is ever written anywhere."""

from __future__ import annotations

import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from onionchat.circuits import LOCAL
from onionchat.errors import ErrorCode, LimitReached
from onionchat.throttle import Throttle


@dataclass(slots=True, eq=False)
class Session:
    """One browser's session: a visitor's or a staff member's, never both."""

    id: str
    csrf: str
    last_seen: float  # the last request of any kind, the pages' own updates included
    # The last thing the person did: a click, a form (not a frame's own reload). Staff sessions
    # expire by this one, so a dashboard left open on an unattended computer still times out.
    last_action: float = 0.0
    started: float = 0.0  # when this id was made (at login for staff): for the absolute lifetime
    conversation: str = ""  # visitor: the conversation this browser may read
    attached: int = 0  # visitor: the conversation's attachment it got; an older one has moved on
    passphrase: str = ""  # visitor: shown once on the chat page, then forgotten
    # visitor: the passphrase again after a language switch right after it was shown (it may
    # have been shown in a language the visitor cannot read), until passphrase_until.
    passphrase_again: str = ""
    passphrase_until: float = 0.0
    lang: str = ""  # the language this browser chose on the page; "": the site's default
    staff: str = ""  # staff: the signed-in account name
    staff_generation: int = 0  # staff: the account's generation at login; a newer one signs it out
    available: bool = True  # staff: chose to take new chats (or away)
    # staff: when a self-updating staff page of this browser last asked for its next version
    # (the store's clock). Not an action by the person: it says the page is open, for presence.
    frames_asked_at: float = 0.0
    # staff: the self-updating frame requests of this browser held open right now, by id, for
    # web.poll's budget (opaque here; made on the first one).
    holding: dict[int, Any] | None = None
    resume_throttle: Throttle = field(default_factory=lambda: Throttle(5, 600.0))
    circuit: str = LOCAL  # the Tor circuit that opened it: memory only, never logged

    def csrf_ok(self, token: str) -> bool:
        """Constant-time check of a form's CSRF token."""
        return hmac.compare_digest(self.csrf.encode(), token.encode("utf-8", "surrogateescape"))


class SessionStore:
    """Sessions of one site (visitor or staff), bounded in number, idle time and (staff) lifetime.

    ``idle_by_action``: a session is idle when the person has done nothing for ``idle_seconds``,
    however often its pages update themselves (staff). Otherwise any request keeps it (visitors:
    a waiting visitor's page only polls). ``lifetime_seconds`` ends a session that long after it
    began, however active. ``presence_seconds`` (staff): a session whose pages have not asked
    for that long has no page open, and does not count as available.

    ``per_circuit``: the most sessions one circuit holds at once (None: no such bound), for
    the circuits ``bounded(circuit)`` says; ``live_chat(session)`` tells whether a session
    still holds a chat that goes on (one whose chat ended, or moved to another browser, is as
    bare as one that never had one).
    """

    def __init__(self, limit: int, idle_seconds: float, resume_attempts: int = 5, *,
                 idle_by_action: bool = False, lifetime_seconds: float | None = None,
                 presence_seconds: float = float("inf"), clock: Callable[[], float] = time.monotonic,
                 per_circuit: int | None = None, bounded: Callable[[str], bool] | None = None,
                 live_chat: Callable[[Session], bool] | None = None) -> None:
        self.limit = limit
        self.idle_seconds = idle_seconds
        self.presence_seconds = presence_seconds
        self.resume_attempts = resume_attempts
        self.idle_by_action = idle_by_action
        self.lifetime_seconds = lifetime_seconds
        self._clock = clock
        self.per_circuit = per_circuit
        self.bounded = bounded or (lambda circuit: True)
        self.live_chat = live_chat or (lambda session: True)
        self._sessions: dict[str, Session] = {}
        self._by_circuit: dict[str, dict[str, Session]] = {}

    def __len__(self) -> int:
        return len(self._sessions)

    def _left(self, session: Session, now: float) -> float:
        """Seconds ``session`` has until it idles out or reaches its lifetime (below 0: expired)."""
        since = session.last_action if self.idle_by_action else session.last_seen
        left = self.idle_seconds - (now - since)
        if self.lifetime_seconds is not None:
            left = min(left, self.lifetime_seconds - (now - session.started))
        return left

    def _expired(self, session: Session, now: float) -> bool:
        return self._left(session, now) < 0

    def idle_left(self, session: Session) -> float:
        """Seconds until ``session`` is signed out for want of an action by the person (staff)."""
        return max(0.0, self._left(session, self._clock()))

    def get(self, sid: str | None, *, acted: bool = True) -> Session | None:
        """The live session with id ``sid``; None if unknown, idle or too old.

        ``acted``: the request is the person's own doing (a click, a form), not a page updating
        itself; only then does it count against the idle timeout of a staff session.
        """
        if not sid:
            return None
        session = self._sessions.get(sid)
        if session is None:
            return None
        now = self._clock()
        if self._expired(session, now):
            self._remove(session)
            return None
        session.last_seen = now
        if acted:
            session.last_action = now
        return session

    def _add(self, session: Session) -> None:
        self._sessions[session.id] = session
        self._by_circuit.setdefault(session.circuit, {})[session.id] = session

    def _remove(self, session: Session) -> None:
        self._sessions.pop(session.id, None)
        own = self._by_circuit.get(session.circuit)
        if own is not None:
            own.pop(session.id, None)
            if not own:
                del self._by_circuit[session.circuit]

    def create(self, circuit: str = LOCAL) -> Session:
        """A new session for ``circuit``; refused with LimitReached when the store is full of chats.

        Room is made, in this order: a circuit at its ``per_circuit`` bound gives up its own
        longest-unused session (bare ones first); a full store forgets idle sessions, then
        the longest-unused bare session of the circuit holding the most. So a flood of page
        loads pushes out its own sessions first, and never someone who is chatting or who
        opened the start page on a circuit of their own.
        """
        own = self._by_circuit.get(circuit, {})
        if self.per_circuit is not None and len(own) >= self.per_circuit and self.bounded(circuit):
            self._remove(min(own.values(), key=lambda s: (not self._bare(s), s.last_seen)))
        if len(self._sessions) >= self.limit:
            self.sweep()
        if len(self._sessions) >= self.limit and not self._evict_bare():
            raise LimitReached(ErrorCode.BUSY)
        now = self._clock()
        session = Session(id=secrets.token_urlsafe(32), csrf=secrets.token_urlsafe(32),
                          last_seen=now, last_action=now, started=now,
                          resume_throttle=Throttle(self.resume_attempts, 600.0), circuit=circuit)
        self._add(session)
        return session

    def _bare(self, session: Session) -> bool:
        """Holds no login and no chat that is still going."""
        return not session.staff and (not session.conversation or not self.live_chat(session))

    def _evict_bare(self) -> bool:
        """Make room by dropping a bare session: of the circuit holding the most, its longest-unused.

        A flood of page loads creates sessions; they must never push out someone who is chatting.
        """
        if not self._by_circuit:
            return False

        for sessions in sorted(self._by_circuit.values(), key=len, reverse=True):
            bare = [s for s in sessions.values() if self._bare(s)]
            if bare:
                self._remove(min(bare, key=lambda s: s.last_seen))
                return True
        return False

    def regenerate(self, session: Session) -> Session:
        """Give ``session`` a fresh id and CSRF token (at login: no session fixation).

        Its lifetime starts again: at a staff login, the absolute lifetime counts from here.
        """
        self._remove(session)
        session.id = secrets.token_urlsafe(32)
        session.csrf = secrets.token_urlsafe(32)
        session.started = session.last_action = self._clock()
        self._add(session)
        return session

    def drop(self, session: Session) -> None:
        """Forget a session."""
        self._remove(session)

    def _forget(self, stale: Callable[[Session], bool]) -> int:
        gone = [s for s in self._sessions.values() if stale(s)]
        for session in gone:
            self._remove(session)
        return len(gone)

    def drop_staff(self, name: str, keep: Session | None = None) -> int:
        """Sign ``name`` out everywhere (after a password or 2FA reset), except session ``keep``."""
        return self._forget(lambda s: s.staff == name and s is not keep)

    def sign_out_where(self, stale: Callable[[Session], bool]) -> int:
        """Forget every signed-in staff session for which ``stale`` is true; returns how many."""
        return self._forget(lambda s: bool(s.staff) and stale(s))

    def sweep(self) -> int:
        """Forget idle and too old sessions; returns how many."""
        now = self._clock()
        return self._forget(lambda s: self._expired(s, now))

    def staff_available(self) -> set[str]:
        """Names of signed-in staff who chose Available and whose staff page is open and updating.

        A browser closed without logging out stops counting once its pages have not asked for
        ``presence_seconds``.
        """
        now = self._clock()
        return {s.staff for s in self._sessions.values()
                if s.staff and s.available and not self._expired(s, now)
                and now - s.frames_asked_at <= self.presence_seconds}

    def mark_present(self, session: Session) -> None:
        """A staff page of ``session``'s browser is open and asking (presence, not activity)."""
        session.frames_asked_at = self._clock()

    def staff_online(self) -> set[str]:
        """Names of staff with a live session (for the wait estimate)."""
        now = self._clock()
        return {s.staff for s in self._sessions.values() if s.staff and not self._expired(s, now)}
