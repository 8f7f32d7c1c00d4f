"""Logging setup, with a filter that keeps tracebacks and request data out of every log line."""

from __future__ import annotations

import logging
import sys
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


def setup(level: str, stream: TextIO = sys.stderr) -> None:
    """Configure the root logger once; there is no access log at all."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(PrivacyFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # aiohttp's access logger would record every request: it is never given a handler or
    # a level that lets it through, and the runners are started with access_log=None.
    logging.getLogger("aiohttp.access").disabled = True
    # stem sets its own logger to its lowest level; its controller chatter is not for the log.
    logging.getLogger("stem").setLevel(logging.WARNING)
