"""Office hours: weekly opening times in a time zone, with closed days for holidays."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from onionchat.errors import ConfigError

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_RULE = re.compile(r"^(?P<d1>[a-z]{3})(?:-(?P<d2>[a-z]{3}))?\s+(?P<h1>\d\d):(?P<m1>\d\d)-(?P<h2>\d\d):(?P<m2>\d\d)$")


@dataclass(frozen=True, slots=True)
class Span:
    """Open from ``start`` to ``end`` minutes after midnight on weekday ``day`` (0 = Monday)."""

    day: int
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class OfficeHours:
    """When counsellors are there; ``is_open`` and ``next_opening`` answer the visitor's question."""

    zone: ZoneInfo
    spans: tuple[Span, ...]
    closed: frozenset[dt.date]

    @classmethod
    def parse(cls, timezone: str, weekly: list[str], closed_dates: list[str]) -> OfficeHours:
        """Read the [hours] settings; a ConfigError names the bad one."""
        try:
            zone = ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigError(f"hours.timezone: unknown time zone {timezone!r} (e.g. \"Europe/Amsterdam\")") from None
        spans: list[Span] = []
        for rule in weekly:
            match = _RULE.match(rule.strip().lower())
            if not match or match["d1"] not in DAYS or (match["d2"] and match["d2"] not in DAYS):
                raise ConfigError(f"hours.weekly: {rule!r} is not like \"mon-fri 09:00-17:00\"")
            start = int(match["h1"]) * 60 + int(match["m1"])
            end = int(match["h2"]) * 60 + int(match["m2"])
            if not 0 <= start < end <= 24 * 60 or int(match["m1"]) > 59 or int(match["m2"]) > 59:
                raise ConfigError(f"hours.weekly: {rule!r} has an impossible time range")
            first = DAYS.index(match["d1"])
            last = DAYS.index(match["d2"] or match["d1"])
            days = range(first, last + 1) if first <= last else [*range(first, 7), *range(0, last + 1)]
            spans.extend(Span(day, start, end) for day in days)
        closed: set[dt.date] = set()
        for text in closed_dates:
            try:
                closed.add(dt.date.fromisoformat(text))
            except ValueError:
                raise ConfigError(f"hours.closed_dates: {text!r} is not a date like \"2026-12-25\"") from None
        return cls(zone=zone, spans=tuple(spans), closed=frozenset(closed))

    def is_open(self, now: dt.datetime | None = None) -> bool:
        """True during opening hours."""
        local = (now or dt.datetime.now(dt.UTC)).astimezone(self.zone)
        if local.date() in self.closed:
            return False
        minute = local.hour * 60 + local.minute
        return any(s.day == local.weekday() and s.start <= minute < s.end for s in self.spans)

    def next_opening(self, now: dt.datetime | None = None) -> dt.datetime | None:
        """The next moment the line opens (local time), within two weeks; None if never."""
        local = (now or dt.datetime.now(dt.UTC)).astimezone(self.zone).replace(second=0, microsecond=0)
        for day_offset in range(15):
            date = local.date() + dt.timedelta(days=day_offset)
            if date in self.closed:
                continue
            starts = sorted(s.start for s in self.spans if s.day == date.weekday())
            for start in starts:
                moment = dt.datetime.combine(date, dt.time(start // 60, start % 60), self.zone)
                if moment > local:
                    return moment
        return None
