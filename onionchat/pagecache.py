"""Rendered pages kept per conversation and stamp, so that a poll serves bytes, not templates.

No aiohttp and no jinja2 here: the chat domain holds these caches (forgetting a
conversation forgets its pages too); the web layer fills them.
"""

from __future__ import annotations

import enum
import html
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

REFRESH_SLOT: Final = "/@refresh@"  # where a cached frame page carries its next URL
_REFRESH_SLOT_BYTES: Final = REFRESH_SLOT.encode()


class Audience(enum.Enum):
    """Who a cached page is for: a visitor's page is valid until a change the visitor can see."""

    VISITOR = "visitor"
    STAFF = "staff"


@dataclass(frozen=True, slots=True)
class PageKey:
    """Which cached page of a conversation: audience, language, and the frame's variant."""

    audience: Audience
    lang: str
    paused: bool = False
    check: int = 0  # a paused frame's "Check for new messages" link alternates 0 and 1
    viewer: str = ""  # staff: the name of a supervisor reading a chat they do not hold
    pane: int = 0  # staff: the workspace pane showing it (its end-of-chat links stay there)


class Rendered:
    """A self-updating frame's page for one stamp: rendered once, each next URL filled in once.

    A held poll's next URL alternates between two values (p=0, p=1; see web/poll.serve_frame),
    so a stamp that holds is served from two byte strings, without rendering or copying per poll.
    """

    __slots__ = ("filled", "live", "page", "stamp")

    def __init__(self, stamp: str, live: bool, render: Callable[[str], bytes]) -> None:
        self.stamp = stamp
        self.live = live
        self.page = render(REFRESH_SLOT if live else "")  # the template's refresh_url
        self.filled: dict[str, bytes] = {}

    def fits(self, stamp: str, url: str) -> bool:
        """True if this page is the one for ``stamp``, live (a next ``url``) or not (``url`` empty)."""
        return self.stamp == stamp and self.live == bool(url)

    def body(self, url: str) -> bytes:
        """The page with ``url`` as its next URL ("" for a page that does not refresh)."""
        if not self.live:
            return self.page
        body = self.filled.get(url)
        if body is None:
            if len(self.filled) >= 4:  # frames of one audience ask for two URLs per stamp; bounded anyway
                self.filled.clear()
            body = self.filled[url] = self.page.replace(_REFRESH_SLOT_BYTES, html.escape(url).encode())
        return body
