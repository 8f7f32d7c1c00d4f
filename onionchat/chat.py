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
import sys
import time
import unicodedata
from bisect import bisect_left
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Final

from onionchat.circuits import LOCAL, Budget, CircuitBudgets
from onionchat.config import LimitsConfig
from onionchat.errors import ChatError, ErrorCode, LimitReached, NotFound
from onionchat.pagecache import Audience, PageCache, Pages
from onionchat.throttle import Throttle

# The resume passphrase is digits, shown in groups: every visitor can read and type them,
# whatever their language or script (Latin, Cyrillic, Arabic), on any phone's number pad, and
# read them aloud to themselves in their own language. Words would need a good word list per
# language, and made-up Latin syllables suit neither Arabic nor Cyrillic readers. Resume is open
# to anyone who can reach the onion (guessing is throttled per circuit, and circuits are cheap),
# so the passphrase carries at least 64 bits: 20 digits are 66.4 bits.
PASSPHRASE_DIGITS = 20
PASSPHRASE_GROUP = 4  # "4821 9930 1274 5583 0917": groups of four, like a card number
# Latin letters a hand-written or remembered code is mistaken for (o for 0, l and I for 1).
_LOOKALIKES = {"o": 0, "l": 1, "i": 1}


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
    BLOCKED = "blocked"
    DELETED = "deleted"
    DISPLACED = "displaced"  # the line was full and this visitor's circuit held more than its share
    CLEARED = "cleared"  # a supervisor cleared the waiting chats of a flood


class NoteKind(enum.Enum):
    """Staff-only text: a note on the conversation, or a line between counsellor and supervisor."""

    NOTE = "note"
    STAFF_LINE = "staff_line"


@dataclass(slots=True, frozen=True)
class Message:
    """One line in a conversation. ``event`` names a SYSTEM line's kind for translation."""

    seq: int
    author: Author
    text: str
    at: float  # wall-clock seconds, shown as HH:MM, never stored
    sender: str = ""  # staff username for STAFF lines; shown to staff only
    event: str = ""


@dataclass(slots=True, frozen=True)
class StaffNote:
    """Staff-only text, a different type from Message on purpose.

    Visitor pages are rendered from a VisitorView, which has no field that could hold one.
    """

    kind: NoteKind
    author: str
    text: str
    at: float


class EventKind(enum.Enum):
    """What happened to a conversation (the audit log names staff actions by these values)."""

    OFFERED = "offered"
    ACCEPTED = "accepted"
    TRANSFERRED = "transferred"
    REQUEUED = "requeued"
    URGENT = "urgent"
    ENDED = "ended"
    BLOCKED = "blocked"
    FLOOD_CLEARED = "flood_cleared"  # a supervisor ended the waiting chats of a flood (conversation: "")


@dataclass(slots=True, frozen=True)
class ChatEvent:
    """Something that happened to a conversation, for the audit log and the statistics.

    Carries the short-lived conversation id and durations only, never text or nickname.
    """

    kind: EventKind
    conversation: str
    actor: str = ""  # the staff member who acted; "" for the visitor or the system
    waited: float = 0.0  # ACCEPTED: seconds in the queue
    length: float = 0.0  # ENDED: seconds since accepted (0 if never answered)
    answered: bool = False  # ENDED: had a counsellor taken it
    end_reason: EndReason | None = None  # ENDED: why
    target: str = ""  # TRANSFERRED: the counsellor who took over
    count: int = 0  # FLOOD_CLEARED: how many waiting chats were ended


class Clock:
    """The chat store's one source of time; tests pass their own.

    ``monotonic`` for every duration and timer (idle, waited, blocked); ``wall`` only for the
    HH:MM shown beside a message, which is never stored.
    """

    def monotonic(self) -> float:
        """Seconds on a clock that never jumps."""
        return time.monotonic()

    def wall(self) -> float:
        """Seconds since the epoch."""
        return time.time()


SYSTEM_CLOCK: Final = Clock()
MB: Final = 1 << 20
NEVER_ASKED_SECONDS: Final = 30.0  # a new chat whose browser never asked for its page is marked left after this
SESSION_BYTES: Final = 2048  # a visitor session with its throttle (measured with tracemalloc)
MESSAGE_BYTES: Final = 120  # a Message or StaffNote object beside its text (measured with sys.getsizeof)
CONVERSATION_BYTES: Final = 4096  # a Conversation with its deques, waiters and dicts, without text


def _release(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class Changes:
    """Wakes everyone waiting for the next change.

    One plain future and one timer per waiting request: a held poll of 10,000 must cost as
    little memory and garbage-collector work as possible, and asyncio.wait_for on an
    Event adds a task, a context and two coroutines to each (measured: see bench/README.md).
    """

    __slots__ = ("_waiters",)

    def __init__(self) -> None:
        self._waiters: set[asyncio.Future[None]] = set()

    def notify(self) -> None:
        """Wake every current waiter."""
        waiters, self._waiters = self._waiters, set()
        for waiter in waiters:
            _release(waiter)

    async def wait(self, timeout: float) -> None:
        """Return at the next notify() or after ``timeout`` seconds, whichever comes first."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiters.add(waiter)
        timer = loop.call_later(timeout, _release, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiters.discard(waiter)


@dataclass(slots=True, eq=False)
class Conversation:
    """One visitor's conversation; ``version`` grows on every change anyone can see."""

    id: str
    nickname: str
    created: float
    clock: Clock = SYSTEM_CLOCK
    state: State = State.WAITING
    counsellor: str = ""
    messages: list[Message] = field(default_factory=list)
    version: int = 1
    visitor_version: int = 1  # grows only with changes a visitor can see
    last_activity: float = 0.0
    accepted_at: float = 0.0
    ended_at: float = 0.0
    end_reason: EndReason | None = None
    next_seq: int = 1
    passphrase_key: bytes = b""
    session_key: bytes = b""  # digest of the visitor's session id, for blocking
    # Which of the visitor's browsers holds the chat: 1 at the start, one more at each resume.
    # A session remembers the number it got; an older one is shown that the chat moved on.
    attached: int = 1
    lang: str = "en"  # the visitor's chosen language, shown to staff
    urgent: bool = False
    answered: bool = False  # a counsellor has taken it at least once
    joined: set[str] = field(default_factory=set)  # supervisors who joined the chat
    notes: list[StaffNote] = field(default_factory=list)
    slot: int = 0  # which pane of its counsellor's workspace shows it (1..); 0 while nobody holds it
    handed_over: bool = False  # transferred, and its new counsellor has not opened it yet
    sent_times: deque[float] = field(default_factory=deque)
    circuit: str = LOCAL  # the Tor circuit that started it: memory only, never logged or shown
    visitor_seen: float = 0.0  # monotonic time of the visitor's latest request for this chat
    left: bool = False  # waiting, but the visitor's page has stopped asking (see ChatStore.sweep)
    asked: bool = False  # the visitor's browser has asked for something since the chat started
    urgent_asked: bool = False  # the visitor pressed "I am in danger now" before writing anything
    text_bytes: int = 0  # memory its messages and notes take (for [limits] memory_mb)
    # Rendered pages, valid for one version: polls serve bytes, not templates (pagecache.py
    # has the policy). They live here so that forgetting the conversation forgets them too.
    rendered: Pages = field(default_factory=dict)
    pages: PageCache = field(kw_only=True)  # the store's: one ceiling for all conversations
    _changed: Changes = field(default_factory=Changes)  # any change (staff frames)
    _visitor_changed: Changes = field(default_factory=Changes)  # changes the visitor can see

    def touch(self) -> None:
        """Note that someone is still here (keeps the idle sweeper away)."""
        self.last_activity = self.clock.monotonic()

    def visitor_here(self) -> bool:
        """The visitor asked for something of this chat; True if they had been marked as gone."""
        self.touch()
        self.visitor_seen = self.last_activity
        self.asked = True
        came_back, self.left = self.left, False
        return came_back

    def bump(self, *, visitor: bool = True) -> None:
        """Advance the version and wake everyone waiting for a change.

        ``visitor=False`` for staff-only changes: the visitor's pages stay valid and their
        held requests stay held.
        """
        self.version += 1
        if visitor:
            self.visitor_version += 1
            self.pages.clear(self.rendered)
        else:
            self.pages.clear(self.rendered, Audience.STAFF)
        self._changed.notify()
        if visitor:
            self._visitor_changed.notify()

    def visitor_waiter(self) -> Callable[[float], Awaitable[bool]]:
        """A waiter for visitor-visible changes after the version seen now."""
        seen = self.visitor_version
        return lambda timeout: self.wait_visitor_newer(seen, timeout)

    async def wait_visitor_newer(self, seen: int, timeout: float) -> bool:
        """Wait until ``visitor_version`` is past ``seen`` or ``timeout`` passes; True if it is.

        Staff-only changes do not wake it: the visitor's held request stays held.
        """
        if self.visitor_version == seen:
            await self._visitor_changed.wait(timeout)
        return self.visitor_version != seen

    def waiter(self) -> Callable[[float], Awaitable[bool]]:
        """A waiter for changes after the version seen now."""
        version = self.version
        return lambda timeout: self.wait_newer(version, timeout)

    async def wait_newer(self, version: int, timeout: float) -> bool:
        """Wait until ``version`` is outdated or ``timeout`` passes; True if it changed."""
        if self.version == version:
            await self._changed.wait(timeout)
        return self.version != version

    def has_staff(self, name: str) -> bool:
        """True when ``name`` holds this chat or joined it as a supervisor."""
        return name == self.counsellor or name in self.joined

    def visitor_view(self, last: int | None = None, before: int | None = None) -> VisitorView:
        """What visitor pages may render: messages and state, never staff-only text.

        ``last``: only the latest ``last`` messages (older than sequence number ``before``, if
        given): a page's size then does not grow with the conversation.
        """
        end = len(self.messages) if before is None else bisect_left(self.messages, before, key=_seq)
        start = 0 if last is None else max(0, end - last)
        return VisitorView(id=self.id, state=self.state, messages=tuple(self.messages[start:end]),
                           end_reason=self.end_reason, urgent=self.urgent, lang=self.lang,
                           earlier=start, later=len(self.messages) - end,
                           urgent_asked=self.urgent_asked)  # never set once urgent

    @property
    def preview(self) -> str:
        """The visitor's first message, for the waiting line on the board."""
        return next((m.text for m in self.messages if m.author is Author.VISITOR), "")

    @property
    def has_written(self) -> bool:
        """The visitor has sent a message (never an empty one)."""
        return any(m.author is Author.VISITOR for m in self.messages)

    @property
    def awaiting_reply(self) -> bool:
        """True when the visitor wrote last: a message waits for the counsellor's answer."""
        for message in reversed(self.messages):
            if message.author is not Author.SYSTEM:
                return message.author is Author.VISITOR
        return False

    @property
    def waited(self) -> float:
        """Seconds this visitor has waited (until accepted)."""
        end = self.accepted_at or self.clock.monotonic()
        return max(0.0, end - self.created)


@dataclass(slots=True, frozen=True)
class VisitorView:
    """The part of a conversation a visitor page receives (no notes, no staff names)."""

    id: str
    state: State
    messages: tuple[Message, ...]
    end_reason: EndReason | None
    urgent: bool
    lang: str
    urgent_asked: bool = False  # pressed "I am in danger now" before writing: it counts with a message
    earlier: int = 0  # messages before those shown
    later: int = 0  # messages after those shown

    @property
    def first_seq(self) -> int:
        """Sequence number of the first message shown (0 if none): where the earlier ones end."""
        return self.messages[0].seq if self.messages else 0


def _seq(message: Message) -> int:
    return message.seq


def make_passphrase() -> str:
    """A fresh resume passphrase: PASSPHRASE_DIGITS random digits in groups of PASSPHRASE_GROUP."""
    digits = "".join(str(secrets.randbelow(10)) for _ in range(PASSPHRASE_DIGITS))
    return " ".join(digits[i:i + PASSPHRASE_GROUP] for i in range(0, PASSPHRASE_DIGITS, PASSPHRASE_GROUP))


def normalise_passphrase(raw: str) -> str:
    """The digits typed, whatever else surrounds them: what a frightened person types on a phone.

    Spaces, dashes, dots and other separators are ignored; digits of any script count
    (Arabic-Indic ٠١٢, Eastern Arabic-Indic ۰۱۲, full-width ０１２), as do the letters o, l and I
    written for 0 and 1.
    """
    out = []
    for ch in raw:
        digit = unicodedata.decimal(ch, None)
        if digit is None:
            digit = _LOOKALIKES.get(ch.lower())
        if digit is not None:
            out.append(str(digit))
    return "".join(out)


def _passphrase_key(raw: str) -> bytes:
    # Only a digest is kept, so even a memory dump does not show the passphrase itself.
    return _digest(normalise_passphrase(raw))


def _serving_order(conv: Conversation) -> tuple[bool, bool, float]:
    """Visitors whose page still asks first, urgent first among them, then the longest waiting."""
    return (conv.left, not conv.urgent, conv.created)


@dataclass(frozen=True, slots=True)
class LineSigns:
    """The waiting line as supervisors see it during a flood: counts only."""

    waiting: int  # waiting, page still asking
    left: int  # waiting, page stopped asking
    suspect: int  # waiting chats clear_flood() would end


class ChatStore:
    """All live conversations of this process, and the queue of those waiting.

    ``circuits`` prices what visitors do per Tor circuit (None: no per-circuit budgets, as
    in unit tests); ``left_after`` is how long a waiting visitor's page may stay silent
    before they count as gone (a few hold periods of the self-updating frame).
    """

    def __init__(self, limits: LimitsConfig, clock: Clock = SYSTEM_CLOCK, *,
                 circuits: CircuitBudgets | None = None, left_after: float = 70.0) -> None:
        self.limits = limits
        self.clock = clock
        self.circuits = circuits
        self.left_after = left_after
        self.pages = PageCache(limits.page_cache_mb * MB)
        self.text_bytes = 0  # every conversation's text_bytes together
        self._conversations: dict[str, Conversation] = {}
        self._by_passphrase: dict[bytes, str] = {}
        self._blocked: dict[bytes, float] = {}  # session digest -> monotonic expiry
        self._listeners: list[Callable[[ChatEvent], None]] = []
        self.board_version = 1  # grows when the queue or an assignment changes
        self._board_changed = Changes()
        if circuits is not None:
            circuits.on_close(self._circuit_closed)

    def _circuit_closed(self, circuit: str) -> None:
        """A circuit went on over its budgets and was closed: its waiting chats leave the line.

        A person who keeps going after being asked to wait is no visitor in need; without this,
        a flooder building circuit after circuit would keep every closed circuit's chats in line.
        Open chats stay: a counsellor is talking to them and decides.
        """
        for conv in [c for c in self._conversations.values() if c.circuit == circuit and c.state is State.WAITING]:
            self.end(conv.id, EndReason.CLEARED)

    def subscribe(self, listener: Callable[[ChatEvent], None]) -> None:
        """Call ``listener`` with every ChatEvent (audit log, statistics)."""
        self._listeners.append(listener)

    def _emit(self, event: ChatEvent) -> None:
        for listener in self._listeners:
            listener(event)

    # -- reading ---------------------------------------------------------------------

    def get(self, cid: str) -> Conversation:
        """The live conversation ``cid``; NotFound if it has gone."""
        conv = self._conversations.get(cid)
        if conv is None:
            raise NotFound(ErrorCode.GONE)
        return conv

    def find(self, cid: str) -> Conversation | None:
        """The conversation ``cid``, or None."""
        return self._conversations.get(cid)

    def __len__(self) -> int:
        return len(self._conversations)

    def __iter__(self) -> Iterator[Conversation]:
        return iter(list(self._conversations.values()))

    def live(self) -> list[Conversation]:
        """Every waiting or open conversation, urgent first, then oldest."""
        return sorted((c for c in self._conversations.values() if c.state is not State.ENDED),
                      key=lambda c: (not c.urgent, c.created))

    def queue(self) -> list[Conversation]:
        """Waiting conversations in serving order (see _serving_order); those who left come last."""
        waiting = [c for c in self._conversations.values() if c.state is State.WAITING]
        waiting.sort(key=_serving_order)
        return waiting

    def waiting_count(self) -> int:
        """How many are waiting with their page still asking (what [limits] queue_length counts)."""
        return sum(1 for c in self._conversations.values() if c.state is State.WAITING and not c.left)

    def live_count(self) -> int:
        """Waiting visitors still there, and open chats: what [limits] conversations counts.

        Ended chats (bare shells for a few minutes) and visitors whose page stopped asking
        hold no place: leaving, or a flood of starts that never look again, blocks nobody.
        """
        return sum(1 for c in self._conversations.values()
                   if c.state is State.OPEN or (c.state is State.WAITING and not c.left))

    def position(self, conv: Conversation) -> int:
        """1-based place of ``conv`` in the serving order (0 when not waiting)."""
        if conv.state is not State.WAITING:
            return 0
        key = _serving_order(conv)
        return 1 + sum(1 for c in self._conversations.values()
                       if c.state is State.WAITING and _serving_order(c) < key)

    def chats_of(self, staff: str) -> list[Conversation]:
        """The open conversations ``staff`` holds or joined, oldest first."""
        return sorted((c for c in self._conversations.values()
                       if c.state is State.OPEN and c.has_staff(staff)), key=lambda c: c.created)

    def _held(self, staff: str) -> Iterator[Conversation]:
        """The open conversations ``staff`` holds as the counsellor, in no order."""
        return (c for c in self._conversations.values() if c.state is State.OPEN and c.counsellor == staff)

    def held_by(self, staff: str) -> int:
        """How many open chats ``staff`` holds as the counsellor (for the per-counsellor limit)."""
        return sum(1 for _ in self._held(staff))

    def held_chats(self, staff: str) -> list[Conversation]:
        """The open conversations ``staff`` holds as the counsellor, by slot."""
        return sorted(self._held(staff), key=lambda c: (c.slot, c.created))

    def free_slot(self, staff: str, slots: int, preferred: int = 0) -> int:
        """The pane of ``staff``'s workspace a chat they take next opens in (1..).

        ``preferred`` if it is free, else the lowest free of ``slots`` panes. A slot is taken
        while a chat in it is open; a free slot whose chat ended a moment ago comes last, as its
        pane may still show that chat's end and wrap-up.
        """
        taken = {c.slot for c in self._held(staff)}
        if 0 < preferred <= slots and preferred not in taken:
            return preferred
        ended = {c.slot for c in self._conversations.values() if c.counsellor == staff and c.state is State.ENDED}
        free = [n for n in range(1, max(slots, len(taken) + 1) + 1) if n not in taken]
        return min(free, key=lambda n: (n in ended, n))

    def memory_bytes(self, sessions: int = 0) -> int:
        """What [limits] memory_mb counts: chat text, kept pages, conversations and ``sessions``."""
        return (self.text_bytes + self.pages.bytes + len(self._conversations) * CONVERSATION_BYTES
                + sessions * SESSION_BYTES)

    def memory_full(self, sessions: int = 0) -> bool:
        """True when memory_mb is reached: new chats are refused."""
        return self.memory_bytes(sessions) >= self.limits.memory_mb * MB

    # -- changing ----------------------------------------------------------------------

    def _bump_board(self) -> None:
        self.board_version += 1
        self._board_changed.notify()

    def board_waiter(self) -> Callable[[float], Awaitable[bool]]:
        """A waiter for board changes after the version seen now."""
        version = self.board_version
        return lambda timeout: self.wait_board(version, timeout)

    async def wait_board(self, version: int, timeout: float) -> bool:
        """Wait until the staff board (queue, assignments) changes after ``version``."""
        if self.board_version == version:
            await self._board_changed.wait(timeout)
        return self.board_version != version

    def notify_board(self) -> None:
        """Wake every board and waiting page (e.g. staff availability changed)."""
        self._bump_board()

    def visitor_here(self, conv: Conversation) -> None:
        """The visitor asked for something of ``conv``: they are here (back in line if marked gone)."""
        if conv.visitor_here() and conv.state is State.WAITING:
            self._bump_board()

    def start(self, nickname: str, session_id: str = "", lang: str = "en", circuit: str = LOCAL,
              sessions: int = 0) -> tuple[Conversation, str]:
        """Open a new waiting conversation; returns it and its resume passphrase (shown once).

        Refused when the session is blocked, when memory_mb is reached (``sessions``: how many
        sessions exist, they count too), when ``circuit`` holds or started too many chats, and
        when the line or the conversations are full and no circuit holds more than its share.
        """
        session_key = _digest(session_id) if session_id else b""
        if session_key and self.is_blocked(session_key):
            raise ChatError(ErrorCode.BLOCKED)
        if self.memory_full(sessions):
            raise LimitReached(ErrorCode.BUSY)
        self._check_circuit(circuit)
        if self.live_count() >= self.limits.conversations and not self._make_room(circuit):
            raise LimitReached(ErrorCode.BUSY)
        if self.waiting_count() >= self.limits.queue_length and not self._make_room(circuit):
            raise LimitReached(ErrorCode.QUEUE_FULL)
        if self.circuits is not None:
            self.circuits.charge(circuit, Budget.CHAT)  # only a chat that starts counts
        return self._open(nickname, session_key, lang, circuit)

    def line_full(self, circuit: str = LOCAL) -> bool:
        """True when a newcomer of ``circuit`` would find the line full (no one holds more than their share)."""
        return self.waiting_count() >= self.limits.queue_length and self._crowding(circuit) is None

    def _open(self, nickname: str, session_key: bytes, lang: str, circuit: str) -> tuple[Conversation, str]:
        nickname = clean_text(nickname, single_line=True)[: self.limits.nickname_length].strip()
        cid = secrets.token_urlsafe(9)
        passphrase = make_passphrase()
        conv = Conversation(id=cid, nickname=nickname, created=self.clock.monotonic(), clock=self.clock, lang=lang,
                            session_key=session_key, circuit=circuit, pages=self.pages)
        conv.visitor_seen = conv.last_activity = conv.created
        conv.passphrase_key = _passphrase_key(passphrase)
        self._conversations[cid] = conv
        self._by_passphrase[conv.passphrase_key] = cid
        self._bump_board()
        self._emit(ChatEvent(EventKind.OFFERED, cid))
        return conv, passphrase

    def _check_circuit(self, circuit: str) -> None:
        """Refuse a circuit with too many chats at once, or too many started lately."""
        if self.circuits is None or not self.circuits.applies(circuit):
            return
        held = sum(1 for c in self._conversations.values() if c.circuit == circuit and c.state is not State.ENDED)
        if held >= self.circuits.config.chats or not self.circuits.allows(circuit, Budget.CHAT):
            self.circuits.refuse(circuit)
            raise LimitReached(ErrorCode.CIRCUIT_BUDGET)

    def _make_room(self, circuit: str) -> bool:
        """Make room for a newcomer of ``circuit`` in a full line, if some circuit holds more than its share.

        The newest waiting chat of the circuit holding the most ends, if that circuit holds at
        least two more than the newcomer's does. So a full line is shared out: a visitor with one
        chat is never pushed out, and one circuit's flood makes room for everyone else's first chat.
        """
        crowding = self._crowding(circuit)
        if crowding is None:
            return False
        self.end(crowding.id, EndReason.DISPLACED)
        return True

    def _crowding(self, circuit: str) -> Conversation | None:
        """The waiting chat that would make room for a newcomer of ``circuit`` (see _make_room), if any."""
        waiting: dict[str, list[Conversation]] = {}
        for conv in self._conversations.values():
            if conv.state is State.WAITING and not conv.left:
                waiting.setdefault(conv.circuit, []).append(conv)
        if not waiting:
            return None
        most = max(waiting, key=lambda c: len(waiting[c]))
        if len(waiting[most]) < len(waiting.get(circuit, ())) + 2:
            return None
        return waiting[most][-1]  # the newest: conversations keep their start order

    def resume(self, passphrase: str, session_throttle: Throttle) -> tuple[Conversation, str]:
        """The live conversation for ``passphrase``, moved to the asking browser; throttled per session.

        (And per circuit, by the caller.) There is no global budget: one person spending it
        would lock every visitor out. Returns it with its new passphrase (shown once): the one
        used here stops working, the browser that held the chat until now is shown that it
        continues elsewhere, and the counsellor sees that the visitor returned.
        """
        if not session_throttle.allow():
            raise LimitReached(ErrorCode.RESUME_THROTTLED)
        cid = self._by_passphrase.get(_passphrase_key(passphrase))
        conv = self._conversations.get(cid) if cid else None
        if conv is None or conv.state is State.ENDED:
            raise NotFound(ErrorCode.RESUME_UNKNOWN)
        conv.touch()
        return conv, self._move(conv)

    def _move(self, conv: Conversation) -> str:
        """Hand ``conv`` to a new browser: a fresh passphrase, the next attachment, a line for both sides."""
        self._by_passphrase.pop(conv.passphrase_key, None)
        passphrase = make_passphrase()
        conv.passphrase_key = _passphrase_key(passphrase)
        self._by_passphrase[conv.passphrase_key] = conv.id
        conv.attached += 1
        # The line bumps the version: the old browser's held frame wakes and sees it has moved.
        self._append(conv, Author.SYSTEM, "", event="resumed")
        self._bump_board()
        return passphrase

    def rebind(self, conv: Conversation, session_id: str) -> None:
        """Note the session that now holds ``conv`` (after a resume), so that blocking reaches it."""
        conv.session_key = _digest(session_id)

    def post(self, cid: str, author: Author, text: str, sender: str = "") -> Message:
        """Add a message; refuses empty, too long, too many, too fast, or to an ended chat."""
        conv = self.get(cid)
        if conv.state is State.ENDED:
            raise ChatError(ErrorCode.ENDED)
        text = self._checked_text(conv, text, author is not Author.VISITOR)
        if author is Author.VISITOR:
            throttle = Throttle(self.limits.messages_per_minute, 60.0, conv.sent_times)
            if not throttle.allow():
                raise LimitReached(ErrorCode.TOO_FAST)
        msg = self._append(conv, author, text, sender)
        if author is Author.VISITOR:
            self.visitor_here(conv)  # touches it too
            if conv.urgent_asked:  # pressed "I am in danger now" before writing: it counts now
                if self._circuit_has_urgent(conv):
                    conv.urgent_asked = False
                else:
                    self._make_urgent(conv, "")
        else:
            conv.touch()
        return msg

    def _checked_text(self, conv: Conversation, text: str, staff: bool = True) -> str:
        text = clean_text(text).strip()
        if not text:
            raise ChatError(ErrorCode.EMPTY)
        if len(text) > self.limits.message_length:
            raise LimitReached(ErrorCode.TOO_LONG)
        if len(conv.messages) + len(conv.notes) >= self.limits.messages_per_conversation:
            raise LimitReached(ErrorCode.CONVERSATION_FULL)
        if not staff and self.memory_full() and conv.text_bytes >= self._share():
            # Above the ceiling a visitor's chat grows only within its share: whoever filled the
            # memory stops there, and every ordinary conversation goes on.
            raise LimitReached(ErrorCode.CONVERSATION_FULL)
        return text

    def _share(self) -> int:
        return self.limits.memory_mb * MB // self.limits.conversations

    def add_note(self, cid: str, kind: NoteKind, author: str, text: str) -> StaffNote:
        """Add staff-only text (a note, or a line between counsellor and supervisor)."""
        conv = self.get(cid)
        if conv.state is State.ENDED:
            raise ChatError(ErrorCode.ENDED)
        note = StaffNote(kind=kind, author=author, text=self._checked_text(conv, text), at=self.clock.wall())
        self._count_text(conv, note.text)
        conv.notes.append(note)
        self._bump_staff_only(conv)
        return note

    def _count_text(self, conv: Conversation, text: str) -> None:
        size = sys.getsizeof(text) + MESSAGE_BYTES
        conv.text_bytes += size
        self.text_bytes += size

    def _bump_staff_only(self, conv: Conversation) -> None:
        conv.bump(visitor=False)

    def _append(self, conv: Conversation, author: Author, text: str, sender: str = "",
                event: str = "") -> Message:
        msg = Message(seq=conv.next_seq, author=author, text=text, at=self.clock.wall(),
                      sender=sender, event=event)
        conv.next_seq += 1
        self._count_text(conv, text)
        conv.messages.append(msg)
        conv.bump()
        return msg

    def accept(self, cid: str, staff: str, max_chats: int, slot: int = 0) -> Conversation:
        """``staff`` takes a waiting conversation into pane ``slot`` (if free); refused if taken or at their limit."""
        conv = self.get(cid)
        if conv.state is not State.WAITING:
            raise ChatError(ErrorCode.TAKEN)
        if self.held_by(staff) >= max_chats:
            raise LimitReached(ErrorCode.MAX_CHATS)
        conv.slot = self.free_slot(staff, max_chats, slot)
        conv.state = State.OPEN
        conv.left = False
        conv.counsellor = staff
        conv.handed_over = False
        if not conv.answered:
            conv.accepted_at = self.clock.monotonic()
        conv.touch()
        self._append(conv, Author.SYSTEM, "", event="joined" if not conv.answered else "took_over")
        waited, conv.answered = conv.waited, True
        self._bump_board()
        self._emit(ChatEvent(EventKind.ACCEPTED, cid, actor=staff, waited=waited))
        return conv

    def mark_urgent(self, cid: str, actor: str = "") -> Conversation:
        """Flag a conversation as urgent: it jumps the queue and stands out for staff.

        The visitor's own press (no ``actor``) also puts a line in the conversation, once: the
        counsellor reads it where they read everything else, even when staff marked it before.
        Staff (``actor``) can always flag a chat. A visitor's press counts once they have
        written something (until then it waits, and takes effect with their first message),
        and only one chat per circuit at a time can be urgent: a flood of fake chats cannot all
        jump ahead of real urgent ones, nor raise an alarm each.
        """
        conv = self.get(cid)
        if conv.state is State.ENDED:
            return conv
        if not actor and self._circuit_has_urgent(conv):
            if self.circuits is not None:
                self.circuits.refuse(conv.circuit)
            raise LimitReached(ErrorCode.URGENT_ALREADY)
        if not actor and not any(m.event == "urgent" for m in conv.messages):
            self._append(conv, Author.SYSTEM, "", event="urgent")
        if conv.urgent:
            return conv
        if not actor and not conv.has_written:
            conv.urgent_asked = True
            return conv
        self._make_urgent(conv, actor)
        return conv

    def _circuit_has_urgent(self, conv: Conversation) -> bool:
        if conv.circuit == LOCAL:  # no circuits without Tor: a local test has several testers
            return False
        return any(c.urgent and c.circuit == conv.circuit and c.state is not State.ENDED and c is not conv
                   for c in self._conversations.values())

    def _make_urgent(self, conv: Conversation, actor: str) -> None:
        conv.urgent = True
        conv.urgent_asked = False
        conv.touch()
        conv.bump(visitor=False)
        self._bump_board()
        self._emit(ChatEvent(EventKind.URGENT, conv.id, actor=actor))

    def transfer(self, cid: str, actor: str, to: str, reason: str, max_chats: int) -> Conversation:
        """Hand an open chat to another counsellor, who sees why in a staff-only line."""
        conv = self.get(cid)
        if conv.state is not State.OPEN:
            raise ChatError(ErrorCode.ENDED)
        if to == conv.counsellor:
            raise ChatError(ErrorCode.BAD_REQUEST)
        if self.held_by(to) >= max_chats:
            raise LimitReached(ErrorCode.COLLEAGUE_FULL)
        conv.slot = self.free_slot(to, max_chats)
        conv.counsellor = to
        conv.joined.discard(to)
        conv.handed_over = True  # highlighted for the new counsellor until they open it
        if reason.strip():
            note = StaffNote(NoteKind.STAFF_LINE, actor, self._checked_text(conv, reason), self.clock.wall())
            self._count_text(conv, note.text)
            conv.notes.append(note)
        self._append(conv, Author.SYSTEM, "", event="took_over")
        self._bump_board()
        self._emit(ChatEvent(EventKind.TRANSFERRED, cid, actor=actor, target=to))
        return conv

    def requeue(self, cid: str, actor: str) -> Conversation:
        """Put an open chat back in the queue (keeping its place and its messages)."""
        conv = self.get(cid)
        if conv.state is not State.OPEN:
            raise ChatError(ErrorCode.ENDED)
        conv.state = State.WAITING
        conv.counsellor = ""
        conv.slot = 0
        conv.handed_over = False
        conv.joined.clear()
        conv.visitor_seen = self.clock.monotonic()  # given a fresh chance to be seen asking
        self._append(conv, Author.SYSTEM, "", event="requeued")
        self._bump_board()
        self._emit(ChatEvent(EventKind.REQUEUED, cid, actor=actor))
        return conv

    def join(self, cid: str, supervisor: str) -> Conversation:
        """A supervisor steps into an open chat."""
        conv = self.get(cid)
        if conv.state is not State.OPEN:
            raise ChatError(ErrorCode.ENDED)
        if not conv.has_staff(supervisor):
            conv.joined.add(supervisor)
            self._append(conv, Author.SYSTEM, "", event="supervisor_joined")
            self._bump_board()
        return conv

    def opened(self, conv: Conversation, staff: str) -> None:
        """``staff`` opened ``conv``: a chat handed over to them is no longer highlighted."""
        if conv.handed_over and conv.counsellor == staff:
            conv.handed_over = False
            self._bump_board()

    def end(self, cid: str, reason: EndReason, now: float | None = None, actor: str = "") -> None:
        """End a conversation and wipe its text at once; a bare shell remains briefly.

        The shell (no messages, notes, nickname or passphrase) lets the other side see that
        the chat ended; the sweeper drops it after ``ended_minutes``.
        """
        conv = self._conversations.get(cid)
        if conv is None or conv.state is State.ENDED:
            return
        now = self.clock.monotonic() if now is None else now
        length = now - conv.accepted_at if conv.answered else 0.0
        self._by_passphrase.pop(conv.passphrase_key, None)
        conv.passphrase_key = b""
        conv.messages.clear()
        conv.notes.clear()
        self.text_bytes -= conv.text_bytes
        conv.text_bytes = 0
        conv.nickname = ""
        conv.state = State.ENDED
        conv.left = False
        conv.end_reason = reason
        conv.ended_at = now
        conv.bump()
        self._bump_board()
        self._emit(ChatEvent(EventKind.ENDED, cid, actor=actor, length=max(0.0, length), answered=conv.answered,
                             end_reason=reason))

    def block(self, cid: str, actor: str, minutes: int) -> None:
        """End an abusive visitor's chat and refuse new chats from their session for a while."""
        conv = self.get(cid)
        if conv.session_key:
            self._blocked[conv.session_key] = self.clock.monotonic() + minutes * 60
        self._emit(ChatEvent(EventKind.BLOCKED, cid, actor=actor))
        self.end(cid, EndReason.BLOCKED, actor=actor)

    def is_blocked(self, session_key: bytes) -> bool:
        """True while a blocked session's time has not run out."""
        until = self._blocked.get(session_key)
        if until is None:
            return False
        if until <= self.clock.monotonic():
            del self._blocked[session_key]
            return False
        return True

    def session_blocked(self, session_id: str) -> bool:
        """True when the visitor session ``session_id`` is blocked."""
        return self.is_blocked(_digest(session_id))

    def forget(self, cid: str, reason: EndReason = EndReason.DELETED) -> None:
        """End a conversation and drop it from memory at once (the visitor deleted it)."""
        self.end(cid, reason)
        self._drop(cid)

    def _drop(self, cid: str) -> None:
        conv = self._conversations.pop(cid, None)
        if conv is not None:
            conv.pages.clear(conv.rendered)

    # -- a flood, as supervisors see it and clear it -----------------------------------

    def _suspect(self, conv: Conversation) -> bool:
        """A waiting chat that looks like part of a flood (only counts, never ids, reach a page).

        Its page stopped asking before its visitor wrote anything, or its circuit started
        more than one chat lately, or was closed for going on over budget. A real visitor
        has one chat per circuit (Tor Browser uses one circuit per site) and either keeps
        their page open or has written something.
        """
        if conv.state is not State.WAITING:
            return False
        if conv.left and not conv.has_written:
            return True
        if self.circuits is None or conv.circuit == LOCAL:
            return False
        return self.circuits.chats_started(conv.circuit) > 1 or self.circuits.closed(conv.circuit)

    def line_signs(self) -> LineSigns:
        """Counts for the supervisors' page."""
        waiting = [c for c in self._conversations.values() if c.state is State.WAITING]
        return LineSigns(waiting=sum(1 for c in waiting if not c.left), left=sum(1 for c in waiting if c.left),
                         suspect=sum(1 for c in waiting if self._suspect(c)))

    def clear_flood(self, actor: str) -> int:
        """End every waiting chat that looks like part of a flood (see _suspect); how many."""
        suspects = [c.id for c in self._conversations.values() if self._suspect(c)]
        for cid in suspects:
            self.end(cid, EndReason.CLEARED)  # one audit entry for all of them, below
        if suspects:
            self._emit(ChatEvent(EventKind.FLOOD_CLEARED, "", actor=actor, count=len(suspects)))
        return len(suspects)

    # -- time passing ----------------------------------------------------------------

    def sweep(self, now: float | None = None) -> int:
        """End idle conversations, mark waiting visitors whose page stopped asking, drop ended shells.

        Returns how many conversations were dropped.
        """
        now = self.clock.monotonic() if now is None else now
        idle = self.limits.idle_minutes * 60
        keep_ended = self.limits.ended_minutes * 60
        dropped = 0
        line_changed = False
        for conv in list(self._conversations.values()):
            if conv.state is not State.ENDED and now - conv.last_activity > idle:
                self.end(conv.id, EndReason.EXPIRED, now)
            if conv.state is State.WAITING and not conv.left and (
                    now - conv.visitor_seen > self.left_after
                    # A browser asks for the chat page at once: a start that never did is no visitor.
                    or (not conv.asked and now - conv.created > NEVER_ASKED_SECONDS)):
                conv.left = line_changed = True
            if conv.state is State.ENDED and now - conv.ended_at >= keep_ended:
                self._drop(conv.id)
                dropped += 1
        if line_changed:
            self._bump_board()
        for key in [k for k, until in self._blocked.items() if until <= now]:
            del self._blocked[key]
        return dropped

    def shutdown(self) -> None:
        """Tell every open conversation that the server is closing, then wipe them."""
        for conv in list(self._conversations.values()):
            self.end(conv.id, EndReason.SHUTDOWN)


def _digest(value: str) -> bytes:
    return hashlib.blake2b(value.encode(), digest_size=16).digest()


def clean_text(text: str, *, single_line: bool = False) -> str:
    """Drop control characters (keeping newlines and tabs in messages) and lone surrogates.

    Format characters (zero-width joiners in emoji, right-to-left marks) stay: people need them.
    """
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    keep = " " if single_line else "\n\t"
    if single_line:
        text = text.replace("\n", " ").replace("\t", " ")
    return "".join(ch for ch in text if ch in keep or unicodedata.category(ch) not in ("Cc", "Cs"))
