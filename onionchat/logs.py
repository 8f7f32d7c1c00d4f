"""Logging setup, with a filter that keeps tracebacks and request data out of every log line."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from typing import TextIO


class PrivacyFilter(logging.Filter):
    """Drop what could carry a visitor's words or request: tracebacks and library arguments.

    A traceback can quote the text that failed to decode; aiohttp's own messages can quote
    the request line. Our own log calls never pass such data, so only their arguments stay.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Strip the record; never drop it."""
        record.exc_info = None
        record.exc_text = None
        record.stack_info = None
        if not record.name.startswith("onionchat"):
            record.msg = str(record.msg) if isinstance(record.msg, str) else type(record.msg).__name__
            record.args = ()
        return True


class QuietLibraries(logging.Filter):
    """Drop stem's records below WARNING: its controller chatter (every control command) is not for the log.

    A filter on the handler rather than stem's logger level: stem sets its logger to its lowest
    level when it is imported, and it is imported only when publishing, after setup().
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Keep everything but stem's lines below WARNING."""
        return record.levelno >= logging.WARNING or not (record.name == "stem" or record.name.startswith("stem."))


LINES_PER_MINUTE = 60  # onionchat's own lines a minute, at most, whatever an attacker does
OTHER_LINES_PER_MINUTE = 30  # libraries' lines (aiohttp's "Error handling request" on a bad request, ...)


class BoundedHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A stream handler that writes at most so many lines a minute, then says how many it left out.

    Whatever an attacker triggers (bad requests, refusals, failing accepts), the log cannot
    fill the disk: at most ``per_minute`` lines of onionchat's own and ``others_per_minute`` of
    libraries a minute, plus one summary line. Separate budgets, so that a flood of a library's
    complaints about bad requests cannot crowd out onionchat's own warnings.
    """

    def __init__(self, stream: TextIO, per_minute: int = LINES_PER_MINUTE,
                 others_per_minute: int = OTHER_LINES_PER_MINUTE,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(stream)
        self.budgets = {True: per_minute, False: others_per_minute}
        self.clock = clock
        self._minute = -1
        self._written = {True: 0, False: 0}
        self._dropped = 0

    def emit(self, record: logging.LogRecord) -> None:
        """Write ``record`` unless this minute's lines are used up."""
        minute = int(self.clock() // 60)
        if minute != self._minute:
            self._minute, self._written = minute, {True: 0, False: 0}
            if self._dropped:
                dropped, self._dropped = self._dropped, 0
                summary = logging.LogRecord("onionchat", logging.WARNING, __file__, 0,
                                            "%d log lines were left out in the last minute(s): too many", (dropped,),
                                            None)
                super().emit(summary)
        own = record.name == "onionchat" or record.name.startswith("onionchat.")
        if self._written[own] >= self.budgets[own]:
            self._dropped += 1
            return
        self._written[own] += 1
        super().emit(record)


def setup(level: str, stream: TextIO = sys.stderr) -> None:
    """Configure the root logger once; there is no access log at all."""
    handler = BoundedHandler(stream)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(QuietLibraries())
    handler.addFilter(PrivacyFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # aiohttp's access logger would record every request: it is never given a handler or
    # a level that lets it through, and the runners are started with access_log=None.
    logging.getLogger("aiohttp.access").disabled = True
