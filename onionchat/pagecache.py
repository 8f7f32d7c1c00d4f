"""Rendered pages kept per conversation, so that a poll serves bytes, not templates: with a ceiling.

No aiohttp and no jinja2 here: the chat domain holds these caches (forgetting a
conversation forgets its pages too); the web layer fills them through ``PageCache.serve``.

The policy, so that memory has a ceiling whatever a visitor does:

- per conversation at most one page for the visitor (the language and stamp asked for last)
  and one per staff member looking at it; a paused frame's page is never kept (a paused
  frame asks only when the person presses "Check for new messages");
- each kept page holds at most its two filled-in refresh variants (p=0 and p=1);
- all kept pages of the process together stay within ``max_bytes``; beyond it, and for a
  page larger than an eighth of it, pages are rendered for every request instead.
"""

from __future__ import annotations

import enum
import html
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

REFRESH_SLOT: Final = "/@refresh@"  # where a cached frame page carries its next URL
_REFRESH_SLOT_BYTES: Final = REFRESH_SLOT.encode()
FILLED_VARIANTS: Final = 2  # a held poll's next URL alternates between two values (see web/poll.py)
COPIES: Final = 1 + FILLED_VARIANTS  # a kept page's bytes: the page and its filled-in variants


class Audience(enum.Enum):
    """Who a cached page is for: a visitor's page is valid until a change the visitor can see."""

    VISITOR = "visitor"
    STAFF = "staff"


@dataclass(frozen=True, slots=True)
class PageKey:
    """Which kept page of a conversation: the visitor's, or one staff member's view."""

    audience: Audience
    viewer: str = ""  # staff: the name of a supervisor reading a chat they do not hold
    pane: int = 0  # staff: the workspace pane showing it (its end-of-chat links stay there)


class Rendered:
    """A self-updating frame's page for one stamp: rendered once, each next URL filled in once.

    A held poll's next URL alternates between two values (p=0, p=1; see web/poll.serve_frame),
    so a stamp that holds is served from two byte strings, without rendering or copying per poll.
    """

    __slots__ = ("filled", "live", "page", "stamp", "variant")

    def __init__(self, stamp: str, live: bool, render: Callable[[str], bytes], variant: str = "") -> None:
        self.stamp = stamp
        self.live = live
        self.variant = variant  # what else the page depends on (its language)
        self.page = render(REFRESH_SLOT if live else "")  # the template's refresh_url
        self.filled: dict[str, bytes] = {}

    @property
    def size(self) -> int:
        """The bytes this page may come to hold (the page and its filled-in variants)."""
        return len(self.page) * (COPIES if self.live else 1)

    def fits(self, stamp: str, url: str, variant: str = "") -> bool:
        """True if this page is the one for ``stamp`` and ``variant``, live (a next ``url``) or not."""
        return self.stamp == stamp and self.live == bool(url) and self.variant == variant

    def body(self, url: str) -> bytes:
        """The page with ``url`` as its next URL ("" for a page that does not refresh)."""
        if not self.live:
            return self.page
        body = self.filled.get(url)
        if body is None:
            if len(self.filled) >= FILLED_VARIANTS:  # frames ask for two URLs per stamp; bounded anyway
                self.filled.clear()
            body = self.filled[url] = self.page.replace(_REFRESH_SLOT_BYTES, html.escape(url).encode())
        return body


Pages = dict[PageKey, Rendered]  # one conversation's kept pages


class PageCache:
    """The byte budget of every kept page of the process, and the one way pages are kept."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0

    def serve(self, pages: Pages, key: PageKey | None, stamp: str, url: str, render: Callable[[str], bytes],
              variant: str = "") -> bytes:
        """The page for ``stamp`` from ``pages`` (rendered and kept if it is not there yet).

        ``key`` None: a page never kept (a paused frame's).
        """
        if key is None:
            return Rendered(stamp, bool(url), render).body(url)
        cached = pages.get(key)
        if cached is not None and cached.fits(stamp, url, variant):
            return cached.body(url)
        if cached is not None:
            self._drop(pages, key)
        fresh = Rendered(stamp, bool(url), render, variant)
        if fresh.size <= self.max_bytes // 8 and self.bytes + fresh.size <= self.max_bytes:
            pages[key] = fresh
            self.bytes += fresh.size
        return fresh.body(url)

    def _drop(self, pages: Pages, key: PageKey) -> None:
        self.bytes -= pages.pop(key).size

    def clear(self, pages: Pages, audience: Audience | None = None) -> None:
        """Forget the kept pages of one conversation (of one ``audience`` only, if given)."""
        for key in [k for k in pages if audience is None or k.audience is audience]:
            self._drop(pages, key)
