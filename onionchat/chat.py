"""The in-memory chat domain: conversations, messages, the queue, and change notification.

Nothing here touches a file, a log or the network: conversations exist only in this
process's memory and are wiped when they end. The web layer talks to ``ChatStore`` only,
a narrow interface that a shared in-memory engine could implement later.
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import secrets
import time
import unicodedata
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field

from onionchat.config import LimitsConfig
from onionchat.errors import ChatError, LimitReached, NotFound
from onionchat.throttle import Throttle

# Unambiguous consonants and vowels that read the same in most European languages and are
# easy to type on any phone keyboard: 70 syllables, 4,900 two-syllable words, and four
# words make 49 bits: beyond reach of the throttled guessing we allow.
_CONSONANTS = "bdfgklmnprstvz"
_VOWELS = "aeiou"
PASSPHRASE_WORDS = 4


class State(enum.Enum):
    """Where a conversation is in its life."""

    WAITING = "waiting"
    OPEN = "open"
    ENDED = "ended"


class Author(enum.Enum):
    """Who wrote a message; SYSTEM lines are events such as 'a counsellor joined'."""

    VISITOR = "visitor"
    STAFF = "staff"
    SYSTEM = "system"


class EndReason(enum.Enum):
    """Why a conversation ended; the visitor sees a line for each."""

    VISITOR_LEFT = "visitor_left"
    QUICK_EXIT = "quick_exit"
    STAFF_ENDED = "staff_ended"
    EXPIRED = "expired"
    SHUTDOWN = "shutdown"


@dataclass(slots=True, frozen=True)
class Message:
    """One line in a conversation. ``event`` names a SYSTEM line's kind for translation."""

    seq: int
    author: Author
    text: str
    at: float  # wall-clock seconds, shown as HH:MM, never stored
    sender: str = ""  # staff username for STAFF lines; shown to staff only
    event: str = ""


def _now() -> float:
    return time.monotonic()


@dataclass(slots=True, eq=False)
class Conversation:
    """One visitor's conversation; ``version`` grows on every change anyone can see."""

    id: str
    nickname: str
    created: float
    state: State = State.WAITING
    counsellor: str = ""
    messages: list[Message] = field(default_factory=list)
    version: int = 1
    last_activity: float = 0.0
    accepted_at: float = 0.0
    ended_at: float = 0.0
    end_reason: EndReason | None = None
    next_seq: int = 1
    passphrase_key: bytes = b""
    staff_seen: int = 0  # last message seq the counsellor's frame showed (for 'new' marks)
    sent_times: deque[float] = field(default_factory=deque)
    # Rendered pages per audience, valid for one version: polls serve bytes, not templates.
    rendered: dict[str, tuple[str, bytes]] = field(default_factory=dict)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    def touch(self) -> None:
        """Note that someone is still here (keeps the idle sweeper away)."""
        self.last_activity = _now()

    def bump(self) -> None:
        """Advance the version and wake everyone waiting for a change."""
        self.version += 1
        self.rendered.clear()
        self._changed.set()
        self._changed = asyncio.Event()

    def waiter(self) -> Callable[[float], Awaitable[bool]]:
        """A waiter for changes after the version seen now."""
        version = self.version
        return lambda timeout: self.wait_newer(version, timeout)

    async def wait_newer(self, version: int, timeout: float) -> bool:
        """Wait until ``version`` is outdated or ``timeout`` passes; True if it changed."""
        if self.version != version:
            return True
        event = self._changed
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except TimeoutError:
            return self.version != version
        return True

    @property
    def preview(self) -> str:
        """The visitor's first message, for the queue on the dashboard."""
        return next((m.text for m in self.messages if m.author is Author.VISITOR), "")

    @property
    def unread(self) -> bool:
        """True when the latest message came after the counsellor's view last showed."""
        return bool(self.messages) and self.messages[-1].seq > self.staff_seen

    @property
    def waited(self) -> float:
        """Seconds this visitor has waited (until accepted)."""
        end = self.accepted_at or _now()
        return max(0.0, end - self.created)


def make_passphrase() -> str:
    """A fresh resume passphrase: four short pronounceable words."""
    syllables = [c + v for c in _CONSONANTS for v in _VOWELS]
    return "-".join(secrets.choice(syllables) + secrets.choice(syllables) for _ in range(PASSPHRASE_WORDS))


def normalise_passphrase(raw: str) -> str:
    """Accept any case, spaces or dashes: what a frightened person types on a phone."""
    letters = "".join(ch for ch in raw.lower() if ch.isascii() and ch.isalpha())
    return letters


def _passphrase_key(raw: str) -> bytes:
    # Only a digest is kept, so even a memory dump does not show the passphrase itself.
    return hashlib.blake2b(normalise_passphrase(raw).encode(), digest_size=16).digest()


class ChatStore:
    """All live conversations of this process, and the queue of those waiting."""

    def __init__(self, limits: LimitsConfig, clock: Callable[[], float] = time.time) -> None:
        self.limits = limits
        self._clock = clock
        self._conversations: dict[str, Conversation] = {}
        self._by_passphrase: dict[bytes, str] = {}
        self._resume_throttle = Throttle(limits.resume_attempts * 20, 60.0)
        self.board_version = 1  # grows when the queue or an assignment changes
        self._board_changed = asyncio.Event()

    # -- reading ---------------------------------------------------------------------

    def get(self, cid: str) -> Conversation:
        """The live conversation ``cid``; NotFound if it has gone."""
        conv = self._conversations.get(cid)
        if conv is None:
            raise NotFound("gone")
        return conv

    def find(self, cid: str) -> Conversation | None:
        """The conversation ``cid``, or None."""
        return self._conversations.get(cid)

    def __len__(self) -> int:
        return len(self._conversations)

    def __iter__(self) -> Iterator[Conversation]:
        return iter(list(self._conversations.values()))

    def queue(self) -> list[Conversation]:
        """Waiting conversations, longest waiting first."""
        waiting = [c for c in self._conversations.values() if c.state is State.WAITING]
        waiting.sort(key=lambda c: c.created)
        return waiting

    def position(self, conv: Conversation) -> int:
        """1-based place of ``conv`` in the queue (0 when not waiting)."""
        if conv.state is not State.WAITING:
            return 0
        return 1 + sum(1 for c in self._conversations.values()
                       if c.state is State.WAITING and c.created < conv.created)

    def chats_of(self, staff: str) -> list[Conversation]:
        """The open conversations held by ``staff``, oldest first."""
        return sorted((c for c in self._conversations.values()
                       if c.state is State.OPEN and c.counsellor == staff), key=lambda c: c.created)

    # -- changing ----------------------------------------------------------------------

    def _bump_board(self) -> None:
        self.board_version += 1
        self._board_changed.set()
        self._board_changed = asyncio.Event()

    def board_waiter(self) -> Callable[[float], Awaitable[bool]]:
        """A waiter for board changes after the version seen now."""
        version = self.board_version
        return lambda timeout: self.wait_board(version, timeout)

    async def wait_board(self, version: int, timeout: float) -> bool:
        """Wait until the staff board (queue, assignments) changes after ``version``."""
        if self.board_version != version:
            return True
        event = self._board_changed
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except TimeoutError:
            return self.board_version != version
        return True

    def start(self, nickname: str) -> tuple[Conversation, str]:
        """Open a new waiting conversation; returns it and its resume passphrase (shown once)."""
        if len(self._conversations) >= self.limits.conversations:
            raise LimitReached("busy")
        if sum(1 for c in self._conversations.values() if c.state is State.WAITING) >= self.limits.queue_length:
            raise LimitReached("queue_full")
        nickname = clean_text(nickname, single_line=True)[: self.limits.nickname_length].strip()
        cid = secrets.token_urlsafe(9)
        passphrase = make_passphrase()
        conv = Conversation(id=cid, nickname=nickname, created=_now())
        conv.touch()
        conv.passphrase_key = _passphrase_key(passphrase)
        self._conversations[cid] = conv
        self._by_passphrase[conv.passphrase_key] = cid
        self._bump_board()
        return conv, passphrase

    def resume(self, passphrase: str, session_throttle: Throttle) -> Conversation:
        """The live conversation for ``passphrase``; throttled per session and globally."""
        if not session_throttle.allow() or not self._resume_throttle.allow():
            raise LimitReached("resume_throttled")
        cid = self._by_passphrase.get(_passphrase_key(passphrase))
        conv = self._conversations.get(cid) if cid else None
        if conv is None or conv.state is State.ENDED:
            raise NotFound("resume_unknown")
        conv.touch()
        return conv

    def post(self, cid: str, author: Author, text: str, sender: str = "") -> Message:
        """Add a message; refuses empty, too long, too many, too fast, or to an ended chat."""
        conv = self.get(cid)
        if conv.state is State.ENDED:
            raise ChatError("ended")
        text = clean_text(text).strip()
        if not text:
            raise ChatError("empty")
        if len(text) > self.limits.message_length:
            raise LimitReached("too_long")
        if len(conv.messages) >= self.limits.messages_per_conversation:
            raise LimitReached("conversation_full")
        if author is Author.VISITOR:
            throttle = Throttle(self.limits.messages_per_minute, 60.0, conv.sent_times)
            if not throttle.allow():
                raise LimitReached("too_fast")
        msg = self._append(conv, author, text, sender)
        conv.touch()
        return msg

    def _append(self, conv: Conversation, author: Author, text: str, sender: str = "",
                event: str = "") -> Message:
        msg = Message(seq=conv.next_seq, author=author, text=text, at=self._clock(),
                      sender=sender, event=event)
        conv.next_seq += 1
        conv.messages.append(msg)
        conv.bump()
        return msg

    def accept(self, cid: str, staff: str, max_chats: int) -> Conversation:
        """``staff`` takes a waiting conversation; refused if taken or at their chat limit."""
        conv = self.get(cid)
        if conv.state is not State.WAITING:
            raise ChatError("taken")
        if len(self.chats_of(staff)) >= max_chats:
            raise LimitReached("max_chats")
        conv.state = State.OPEN
        conv.counsellor = staff
        conv.accepted_at = _now()
        conv.touch()
        self._append(conv, Author.SYSTEM, "", event="joined")
        self._bump_board()
        return conv

    def end(self, cid: str, reason: EndReason, now: float | None = None) -> None:
        """End a conversation and wipe its text at once; a bare shell remains briefly.

        The shell (no messages, no nickname, no passphrase) lets the other side see that
        the chat ended; the sweeper drops it after ``ended_minutes``.
        """
        conv = self._conversations.get(cid)
        if conv is None or conv.state is State.ENDED:
            return
        self._by_passphrase.pop(conv.passphrase_key, None)
        conv.passphrase_key = b""
        conv.messages.clear()
        conv.nickname = ""
        conv.state = State.ENDED
        conv.end_reason = reason
        conv.ended_at = _now() if now is None else now
        conv.bump()
        self._bump_board()

    def forget(self, cid: str) -> None:
        """Drop a conversation entirely (after ending it)."""
        self.end(cid, EndReason.VISITOR_LEFT)
        self._conversations.pop(cid, None)

    def sweep(self, now: float | None = None) -> int:
        """End idle conversations and drop ended shells; returns how many were dropped."""
        now = _now() if now is None else now
        idle = self.limits.idle_minutes * 60
        keep_ended = self.limits.ended_minutes * 60
        dropped = 0
        for conv in list(self._conversations.values()):
            if conv.state is not State.ENDED and now - conv.last_activity > idle:
                self.end(conv.id, EndReason.EXPIRED, now)
            if conv.state is State.ENDED and now - conv.ended_at >= keep_ended:
                del self._conversations[conv.id]
                dropped += 1
        return dropped

    def shutdown(self) -> None:
        """Tell every open conversation that the server is closing, then wipe them."""
        for conv in list(self._conversations.values()):
            self.end(conv.id, EndReason.SHUTDOWN)


def clean_text(text: str, *, single_line: bool = False) -> str:
    """Drop control characters (keeping newlines and tabs in messages) and lone surrogates.

    Format characters (zero-width joiners in emoji, right-to-left marks) stay: people need them.
    """
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    keep = " " if single_line else "\n\t"
    if single_line:
        text = text.replace("\n", " ").replace("\t", " ")
    return "".join(ch for ch in text if ch in keep or unicodedata.category(ch) not in ("Cc", "Cs"))
