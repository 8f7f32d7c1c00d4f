"""Self-updating frames without JavaScript: held requests chained with ``Refresh``.

A frame's URL carries the stamp of what it shows. When the browser asks for the stamp it
already has, the request is held until something changes (or the hold time passes), and
the answer refreshes itself at once to the next stamp. The old page stays on screen while
the next request is held, so a change reaches the screen as soon as it happens, with one
request per change or per hold period.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from aiohttp import web

from onionchat.web import keys
from onionchat.web.headers import FRAME_HEADERS, REFRESH

Waiter = Callable[[float], Awaitable[bool]]


@dataclass(frozen=True, slots=True)
class Frame:
    """What a self-updating frame needs: its stamp now, how to wait, how to render."""

    stamp: Callable[[], str]
    wait: Waiter
    render: Callable[[str, str], bytes]  # (stamp, next URL or "") -> page bytes
    path: str
    final: Callable[[], bool] = lambda: False  # True: the page never changes again
    fragment: str = "#latest"  # where the next version opens; "" for a frame that keeps its newest in view itself


class HeldFrames(Protocol):
    """Where serve_frame keeps one browser's held requests (a staff session's ``holding``)."""

    holding: dict[int, Any] | None


def may_hold(browser: HeldFrames, request: web.Request, budget: int) -> dict[int, Any] | None:
    """Count ``request`` among the browser's held ones if the budget allows (returns them); else None.

    A page the browser has left keeps its held requests here until their hold ends, though
    their connections are gone (aiohttp does not cancel them): only live ones count then.
    Keyed by id(): a request is a mapping, unhashable and equal to any other with the same items.
    """
    held = browser.holding
    if held is None:
        held = browser.holding = {}
    if len(held) >= budget and sum(1 for r in held.values() if r.transport is not None) >= budget:
        return None
    held[id(request)] = request
    return held


class FrameSource(Protocol):
    """What serve_frame needs; a Frame, or a class with these methods (no closures per request)."""

    @property
    def path(self) -> str: ...  # noqa: D102
    @property
    def fragment(self) -> str: ...  # noqa: D102
    def stamp(self) -> str: ...  # noqa: D102 - digits, dots and letters only: it goes into a URL as it is
    def wait(self, timeout: float) -> Awaitable[bool]: ...  # noqa: D102
    def render(self, stamp: str, url: str) -> bytes: ...  # noqa: D102
    def final(self) -> bool: ...  # noqa: D102


def by_person(request: web.Request) -> bool:
    """True when the person made this request (a click, a form, a typed address), not a page itself.

    A page updating itself is a frame's Refresh to its next stamp, or a frame loading inside such
    a page. Browsers say so themselves: ``Sec-Fetch-User: ?1`` marks navigations the person started, and
    is absent from Refresh-driven ones and from frames loading with their page. A client that sends
    no ``Sec-Fetch-*`` headers at all is judged by the URL: only a frame's Refresh carries the
    stamp ``v`` (see serve_frame), never a link or a form a person uses.
    """
    if request.method not in ("GET", "HEAD"):
        return True
    headers = request.headers
    user = headers.get("Sec-Fetch-User")
    if user is not None:
        return user == "?1"
    if "Sec-Fetch-Mode" in headers or "Sec-Fetch-Dest" in headers:
        return False
    return "v" not in request.query


def next_check(request: web.Request) -> int:
    """The ``n`` of a paused frame's "Check for new messages" link: 0 and 1 alternate.

    A link to the frame's own URL (?paused=1#latest) would only jump within the page: the
    browser would not ask the server for anything new.
    """
    return 0 if request.query.get("paused") == "1" and request.query.get("n") == "1" else 1


async def wait_any(waiters: Iterable[Waiter], timeout: float) -> bool:
    """Wait until any waiter sees a change; True if one did."""
    tasks = [asyncio.ensure_future(w(timeout)) for w in waiters]
    if not tasks:
        await asyncio.sleep(timeout)
        return False
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        return any(t.result() for t in done)
    finally:
        for t in tasks:
            t.cancel()


async def serve_frame(request: web.Request, frame: FrameSource, budget: HeldFrames | None = None) -> web.Response:
    """Answer a frame request, holding it while the browser already shows the newest stamp.

    With a ``budget`` (a staff browser's session), at most ``poll.staff_held_frames`` of that
    browser's requests are held at once: a browser opens about six connections per server, and
    with every one held by a frame a counsellor's Send would wait for a hold to end. A request
    beyond the budget is answered at once and asks again after ``interval_seconds``.
    """
    poll = request.app[keys.CONFIG].poll
    query = request.query
    paused = query.get("paused") == "1"
    stamp = frame.stamp()
    delay = 0 if poll.mode == "hold" else poll.interval_seconds
    if poll.mode == "hold" and not paused and query.get("v") == stamp and not frame.final():
        if budget is None:
            await frame.wait(float(poll.hold_seconds))
        elif (held := may_hold(budget, request, poll.staff_held_frames)) is not None:
            try:
                await frame.wait(float(poll.hold_seconds))
            finally:
                del held[id(request)]
        else:
            delay = poll.interval_seconds
        stamp = frame.stamp()
    path = frame.path
    # The next URL must differ from the one on screen even when nothing changed: a refresh to
    # the same URL plus '#latest' is only a jump within the page, and the frame would stop
    # asking (seen in Chromium). So 'p' alternates between 0 and 1 on every answer.
    turn = "1" if query.get("p") == "0" else "0"
    url = f"{path}{'&' if '?' in path else '?'}v={stamp}&p={turn}{frame.fragment}"
    live = not paused and not frame.final()
    # Frames that are polled a lot cache their pages per stamp and per next URL (render.Rendered).
    body = frame.render(stamp, url if live else "")
    # The whole header block, security headers included (the response hook has nothing to add).
    response = web.Response(body=body, headers=FRAME_HEADERS)
    if live:
        # The header works even before the page is parsed; visitor pages repeat it as a meta tag.
        # Staff frames do not: where a page has both, browsers follow the shorter delay, and a
        # frame beyond the budget must wait (checked in chromium and firefox-esr).
        response.headers[REFRESH] = f"{delay}; url={url}"
    return response
