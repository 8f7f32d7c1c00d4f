"""Anonymous aggregate counts per month and category, with small-cell suppression."""

from __future__ import annotations

import asyncio
import logging
import math
import re
import threading
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from onionchat import storage
from onionchat.chat import ChatEvent, EndReason, EventKind
from onionchat.errors import ChatError, ErrorCode, StorageError

log = logging.getLogger("onionchat.stats")

STATS_FILE = "stats.json"
FORMAT_VERSION = 1
PENDING_SECONDS = 12 * 3600  # an unfiled wrap-up is forgotten after this long
PENDING_PER_STAFF = 50  # and at most this many wait per counsellor (memory bound)
MONTH_RE = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")
HIDDEN = "x"  # a cell hidden only so that a small cell cannot be worked out from a total

# Upper bounds in seconds and labels. Waits and lengths are counted in these buckets only:
# no single duration is ever kept, so medians and percentiles are bucket ranges.
WAIT_BUCKETS: tuple[tuple[float, str], ...] = (
    (30, "under 30 s"), (60, "30 s - 1 min"), (120, "1-2 min"), (300, "2-5 min"), (600, "5-10 min"),
    (1200, "10-20 min"), (1800, "20-30 min"), (3600, "30-60 min"), (math.inf, "over 60 min"))
LENGTH_BANDS: tuple[tuple[float, str], ...] = (
    (300, "under 5 min"), (900, "5-15 min"), (1800, "15-30 min"), (3600, "30-60 min"),
    (7200, "1-2 hours"), (math.inf, "over 2 hours"))
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")

# Table names in stats.json. Each wrap-up question is counted on its own (marginals only):
# combinations such as age band x exploitation x duration could single a person out.
CHATS, WAIT, LENGTH, HOURS, WRAPUP = "chats", "wait", "length", "hours", "wrapup"
CONTACT = "contact"
QUESTIONS = ("age", "exploitation", "duration", "perpetrators", "referral")

Counts = dict[str, dict[str, dict[str, int]]]  # month -> table -> category -> count


def month_of(at: float) -> str:
    """YYYY-MM of a wall-clock time, in the server's local time."""
    return time.strftime("%Y-%m", time.localtime(at))


def hour_key(at: float) -> str:
    """'weekday-hour' (Monday is 0) of a wall-clock time, in the server's local time."""
    tm = time.localtime(at)
    return f"{tm.tm_wday}-{tm.tm_hour}"


def bucket(seconds: float, buckets: tuple[tuple[float, str], ...]) -> str:
    """The label of the bucket ``seconds`` falls into."""
    return next(label for bound, label in buckets if seconds < bound)


def valid_month(value: str) -> bool:
    """True for 'YYYY-MM' with a real month."""
    return MONTH_RE.match(value) is not None


@dataclass(slots=True)
class _Live:
    """What the counters need to remember about a chat until it ends (memory only)."""

    month: str
    answered: bool = False
    holder: str = ""


@dataclass(frozen=True, slots=True)
class PendingWrapup:
    """A wrap-up that ``staff`` may file once for an ended chat (memory only)."""

    staff: str
    month: str
    since: float  # monotonic: when the chat ended, for 'ended N minutes ago'


class Stats:
    """Counters only: no per-chat rows. Fed by the chat store's events and wrap-ups.

    Counts reach the disk in batches: a month's table is written only once at least ``batch``
    new counts for it have come together (the small-cell suppression threshold; in the 'chats'
    table, of one kind: offered, answered, abandoned), so that no version of ``stats.json``,
    and no difference between two backups of it, holds fewer than ``batch`` chats' or
    wrap-ups' answers to one question. Until then they are held in memory
    (and shown on the statistics page); a restart loses them. What is left of a month that
    has ended is moved into the current month's batch rather than written small or lost.
    """

    def __init__(self, data_dir: Path, clock: Callable[[], float] = time.time, *, batch: int = 1) -> None:
        self.path = data_dir / STATS_FILE
        self.batch = batch
        self._clock = clock
        self._write_lock = threading.Lock()  # one writer at a time, whichever thread flushes
        self._counts: Counts = self._load()  # as on disk
        self._held: Counts = {}  # counted, not yet a whole batch: memory only
        self._dirty = False
        self._live: dict[str, _Live] = {}
        self._pending: dict[str, PendingWrapup] = {}

    # -- the file ------------------------------------------------------------------------

    def _load(self) -> Counts:
        raw = storage.read_json(self.path, {"version": FORMAT_VERSION, "months": {}})
        problem = _check(raw)
        if problem:
            # Never reset silently: the counts are the charity's published figures.
            raise StorageError(f"{self.path} is damaged ({problem}); restore it from a backup or move it "
                               "away to start counting afresh")
        months: Counts = raw["months"]
        return months

    def _write(self, counts: Counts) -> None:
        with self._write_lock:
            storage.write_json(self.path, {"version": FORMAT_VERSION, "months": counts})

    def stored(self) -> Counts:
        """A deep copy of the counters as the file holds them (whole batches only)."""
        return {m: {t: dict(c) for t, c in tables.items()} for m, tables in self._counts.items()}

    def snapshot(self) -> Counts:
        """A deep copy of every counter, those held in memory included."""
        counts = self.stored()
        _merge(counts, self._held)
        return counts

    def held(self) -> int:
        """How many counts are held in memory, waiting for a whole batch."""
        return sum(sum(c.values()) for tables in self._held.values() for c in tables.values())

    def _commit_batches(self) -> None:
        """Move every whole batch from memory to the stored counts; ended months' rest to this month."""
        current = month_of(self._clock())
        for month in [m for m in self._held if m < current]:
            # Little can still come for an ended month: its rest joins this month's batches.
            _merge(self._held, {current: self._held.pop(month)})
        for month in list(self._held):
            tables = self._held[month]
            for table in list(tables):
                cells = tables[table]
                # Each chat or wrap-up counts once in a table, except in 'chats', where one chat
                # is offered and then answered or abandoned: there each kind is a batch of its own.
                groups = [[k] for k in cells] if table == CHATS else [list(cells)]
                for keys in groups:
                    if sum(cells[k] for k in keys) >= self.batch:
                        _merge(self._counts, {month: {table: {k: cells.pop(k) for k in keys}}})
                        self._dirty = True
                if not cells:
                    del tables[table]
            if not tables:
                del self._held[month]

    async def flush(self) -> None:
        """Write the file off the event loop, if a whole batch came together."""
        self._commit_batches()
        if not self._dirty:
            return
        self._dirty = False
        try:
            await asyncio.to_thread(self._write, self.stored())
        except StorageError as exc:
            self._dirty = True  # try again at the next flush
            log.error("cannot write the statistics: %s", exc)

    # -- counting ------------------------------------------------------------------------

    def _add(self, month: str, table: str, key: str) -> None:
        counts = self._held.setdefault(month, {}).setdefault(table, {})
        counts[key] = counts.get(key, 0) + 1

    def on_event(self, event: ChatEvent) -> None:
        """Count what a chat event adds to the figures.

        Everything is counted in the month the chat was offered, so that a month's chats
        offered, answered and abandoned add up.
        """
        cid = event.conversation
        if event.kind is EventKind.OFFERED:
            now = self._clock()
            month = month_of(now)
            self._live[cid] = _Live(month)
            self._add(month, CHATS, "offered")
            self._add(month, HOURS, hour_key(now))
            return
        live = self._live.get(cid)
        if live is None:
            return  # offered before this process started counting: nothing to add to
        if event.kind is EventKind.ACCEPTED:
            live.holder = event.actor
            if not live.answered:  # a chat taken again after a requeue was answered once
                live.answered = True
                self._add(live.month, CHATS, "answered")
                self._add(live.month, WAIT, bucket(event.waited, WAIT_BUCKETS))
        elif event.kind is EventKind.TRANSFERRED:
            live.holder = event.target
        elif event.kind is EventKind.REQUEUED:
            live.holder = ""
        elif event.kind is EventKind.ENDED:
            del self._live[cid]
            if not event.answered:
                self._add(live.month, CHATS, "abandoned")
                return
            self._add(live.month, LENGTH, bucket(event.length, LENGTH_BANDS))
            # The visitor may have left; the wrap-up is still for whoever held the chat.
            holder = event.actor or live.holder
            if holder and event.end_reason is not EndReason.SHUTDOWN:
                self._expect_wrapup(cid, PendingWrapup(holder, live.month, time.monotonic()))

    # -- wrap-ups ------------------------------------------------------------------------

    def _expect_wrapup(self, cid: str, pending: PendingWrapup) -> None:
        self._prune()
        mine = sorted((p.since, c) for c, p in self._pending.items() if p.staff == pending.staff)
        for _, old in mine[: max(0, len(mine) - PENDING_PER_STAFF + 1)]:
            del self._pending[old]
        self._pending[cid] = pending

    def _prune(self) -> None:
        cutoff = time.monotonic() - PENDING_SECONDS
        for cid in [c for c, p in self._pending.items() if p.since < cutoff]:
            del self._pending[cid]

    def pending(self, cid: str, staff: str) -> PendingWrapup:
        """The wrap-up of ``cid`` if ``staff`` may file it; ChatError 'gone' or 'forbidden'."""
        self._prune()
        found = self._pending.get(cid)
        if found is None:
            raise ChatError(ErrorCode.GONE)
        if found.staff != staff:
            raise ChatError(ErrorCode.FORBIDDEN)
        return found

    def pending_for(self, staff: str) -> list[tuple[str, PendingWrapup]]:
        """The wrap-ups ``staff`` has still to file, oldest first."""
        self._prune()
        return sorted(((c, p) for c, p in self._pending.items() if p.staff == staff), key=lambda cp: cp[1].since)

    def file_wrapup(self, cid: str, staff: str, answers: Mapping[str, str] | None) -> None:
        """Count one wrap-up (table -> answer), or a skipped one (None); only once, only by its counsellor."""
        pending = self.pending(cid, staff)
        del self._pending[cid]
        if answers is None:
            self._add(pending.month, WRAPUP, "skipped")
            return
        self._add(pending.month, WRAPUP, "filed")
        for table, answer in answers.items():
            self._add(pending.month, table, answer)

    # -- reading -------------------------------------------------------------------------

    def months(self) -> list[str]:
        """Every month that has a counter, oldest first."""
        return sorted(set(self._counts) | set(self._held))

    def totals(self, first: str, last: str) -> dict[str, dict[str, int]]:
        """The counters of the months ``first`` to ``last`` (inclusive), added up."""
        summed: dict[str, dict[str, int]] = {}
        for source in (self._counts, self._held):
            for month, tables in source.items():
                if first <= month <= last:
                    _merge({"": summed}, {"": tables})
        return summed


def _merge(into: Counts, counts: Counts) -> None:
    """Add ``counts`` to ``into``, month by month, table by table."""
    for month, tables in counts.items():
        for table, cells in tables.items():
            target = into.setdefault(month, {}).setdefault(table, {})
            for key, count in cells.items():
                target[key] = target.get(key, 0) + count


def _check(raw: object) -> str:
    """What is wrong with the parsed stats file, or '' if nothing."""
    if not isinstance(raw, dict) or raw.get("version") != FORMAT_VERSION:
        return f"not a version {FORMAT_VERSION} statistics file"
    months = raw.get("months")
    if not isinstance(months, dict):
        return "no months"
    for month, tables in months.items():
        if not valid_month(month) or not isinstance(tables, dict):
            return f"bad month {month!r}"
        for table, counts in tables.items():
            if not isinstance(counts, dict):
                return f"bad table {month}/{table}"
            for key, count in counts.items():
                if not isinstance(key, str) or isinstance(count, bool) or not isinstance(count, int) or count < 0:
                    return f"bad count {month}/{table}/{key}"
    return ""


# -- small-cell suppression ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Cell:
    """One figure as published: ``shown`` is the number, '<5', or HIDDEN."""

    label: str
    shown: str
    hidden: bool  # suppressed, either because it is small or to protect a small one
    width: int  # bar width in percent of the table's largest shown figure, in steps of 5


@dataclass(frozen=True, slots=True)
class Table:
    """A published table: its cells and its total, after suppression."""

    key: str
    caption: str
    cells: tuple[Cell, ...]
    total: str
    total_hidden: bool

    def cell(self, label: str) -> Cell:
        """The cell called ``label``."""
        return next(c for c in self.cells if c.label == label)


def suppress(counts: list[int], total: int, below: int, *, hide_total: bool = False,
             force: Collection[int] = ()) -> tuple[list[str], str, set[int]]:
    """Published forms of ``counts`` and their ``total``; returns (cells, total, hidden indexes).

    Every count under ``below``, zero included, becomes '<below': showing zeros exactly would
    tell a reader that a '<5' is at least 1. When exactly one cell is small and the total is
    shown, the next smallest cell is hidden too (HIDDEN), so the small one is not the total
    minus the rest. Then, as long as a reader who knows these rules could still pin a small
    non-zero cell to one value (say two cells of 4 and a total of 8), one more cell is hidden;
    when none is left, the total is. ``hide_total`` (the total is a hidden cell of another
    table) hides it here too, and at least one cell, so that adding up the cells does not
    reveal it. ``force`` hides cells whose value another table would reveal. A table with
    nothing in it is shown as zeros: there is nobody to protect.
    """
    small = f"<{below}"
    if below <= 1 or (total == 0 and not any(counts)):
        return [str(c) for c in counts], str(total), set()
    shown = [str(c) for c in counts]
    primary = {i for i, c in enumerate(counts) if c < below}
    hidden = set(primary)
    for i in primary:
        shown[i] = small
    for i in set(force) - primary:
        hidden.add(i)
        shown[i] = HIDDEN
    if 0 < total < below:
        total_mode = "small"
    elif hide_total:
        total_mode = "hidden"
    else:
        total_mode = "exact"

    def hide_next() -> bool:
        rest = [(c, i) for i, c in enumerate(counts) if i not in hidden]
        if not rest:
            return False
        _, i = min(rest)
        hidden.add(i)
        shown[i] = HIDDEN
        return True

    if (len(hidden) == 1 and total_mode == "exact") or (not hidden and total_mode == "hidden"):
        hide_next()
    while total_mode == "exact" and pinned(counts, hidden, primary, below):
        if not hide_next():
            total_mode = "hidden"
    total_shown = {"small": small, "hidden": HIDDEN, "exact": str(total)}[total_mode]
    return shown, total_shown, hidden


def pinned(counts: list[int], hidden: set[int], primary: set[int], below: int) -> list[int]:
    """The small non-zero hidden cells a reader could work out from an exact total.

    The reader knows the rules: a '<below' cell is 0 to below-1, a HIDDEN one is at least
    ``below``, and the hidden cells add up to the total minus the shown ones (taking any
    chats still in progress as none, which is the worst case).
    """
    bounds = {i: (0.0, below - 1.0) if i in primary else (float(below), math.inf) for i in hidden}
    target = sum(counts[i] for i in hidden)
    low_sum = sum(lo for lo, _ in bounds.values())
    high_sum = sum(hi for _, hi in bounds.values())
    found = []
    for i in sorted(primary & hidden):
        lo, hi = bounds[i]
        least = max(lo, target - (high_sum - hi))
        most = min(hi, target - (low_sum - lo))
        if counts[i] > 0 and least == most:
            found.append(i)
    return found


def table(key: str, caption: str, items: Iterable[tuple[str, int]], below: int, *,
          total: int | None = None, hide_total: bool = False, force: Collection[int] = ()) -> Table:
    """A published table of (label, count) with suppression; ``total`` defaults to the sum."""
    labels, counts = [], []
    for label, count in items:
        labels.append(label)
        counts.append(count)
    total = sum(counts) if total is None else total
    shown, total_shown, hidden = suppress(counts, total, below, hide_total=hide_total, force=force)
    # Bars are scaled to shown figures only, so a bar's length tells nothing about a hidden one.
    largest = max((c for i, c in enumerate(counts) if i not in hidden), default=0)
    cells = tuple(Cell(label, shown[i], i in hidden,
                       0 if i in hidden or largest == 0 or counts[i] == 0
                       else max(5, round(counts[i] * 20 / largest) * 5))
                  for i, label in enumerate(labels))
    return Table(key, caption, cells, total_shown, total_shown != str(total))


def with_extra(listed: list[str], counts: Mapping[str, int]) -> list[tuple[str, int]]:
    """The configured answers in order, then answers no longer configured that have counts."""
    extra = sorted(k for k in counts if k not in listed and counts[k])
    return [(label, counts.get(label, 0)) for label in [*listed, *extra]]


def bucket_at(counts: Mapping[str, int], buckets: tuple[tuple[float, str], ...], share: float) -> str:
    """The bucket holding the ``share`` quantile (0.5: median), or '' when nothing was counted."""
    values = [counts.get(label, 0) for _, label in buckets]
    total = sum(values)
    if total == 0:
        return ""
    need, seen = share * total, 0
    for (_, label), value in zip(buckets, values, strict=True):
        seen += value
        if seen >= need:
            return label
    return buckets[-1][1]
