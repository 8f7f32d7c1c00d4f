"""The counsellor's workspace: one page that never reloads, with frames for what changes.

``/`` holds a static availability frame, the self-updating board (your chats, the waiting
line) and one pane per chat the counsellor may hold. Each pane shows a chat's messages and
reply box; nothing that changes by itself ever replaces a page holding a typed reply or a
button under the pointer. The tab title and icon cannot change without reloading a page, so
they live in a separate alerts tab (``/alerts``) meant to be pinned.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from aiohttp import web

from onionchat.accounts import Account
from onionchat.chat import ChatStore, Conversation
from onionchat.errors import ErrorCode
from onionchat.sessions import Session
from onionchat.web import keys
from onionchat.web.csrf import read_form
from onionchat.web.guard import Refused
from onionchat.web.pages import language, see_other
from onionchat.web.poll import Frame, Waiter, next_check, serve_frame, wait_any

from .access import (
    is_supervisor,
    max_chats,
    page,
    pane_count,
    pane_number,
    present,
    signed_in,
    slots,
    urgent_live,
)

routes = web.RouteTableDef()
# Rows of the waiting line on the live board: with them it fits its frame at 1366×768, so an
# update never has a scrolled list to jump back to the top. The rest are counted, with a link to
# the board with updates paused, which lists every one (and does not reload under the pointer).
QUEUE_ROWS = 5
# A counsellor watching a quiet line does nothing for a long time, and the board updating
# itself is not them (issue 11: idle means no action by the person). This long before the
# idle sign-out the board and the alerts tab say when it comes, with an "I am still here".
WARN_SECONDS = 300.0


def signs_out_soon(request: web.Request, session: Session) -> float | None:
    """Wall-clock time of this session's sign-out if it is near (WARN_SECONDS), else None."""
    left = request.app[keys.SESSIONS].idle_left(session)
    if left > min(WARN_SECONDS, request.app[keys.SESSIONS].idle_seconds / 3):
        return None
    return time.time() + left


async def until_changed(stamp: Callable[[], str], waiters: Callable[[], list[Waiter]], timeout: float) -> bool:
    """Wait until ``stamp()`` differs from its value now, waking on any of ``waiters()``; True if it did.

    A frame with buttons should swap its page only when what it shows changed: a message in
    a chat wakes the board, but only a change of that chat's line may reload it.
    """
    loop = asyncio.get_running_loop()
    seen, deadline = stamp(), loop.time() + timeout
    while (left := deadline - loop.time()) > 0:
        await wait_any(waiters(), left)
        if stamp() != seen:
            return True
    return False


def colleagues(request: web.Request, account: Account) -> list[str]:
    """Who a chat can be handed to: colleagues available for new chats, by name."""
    return sorted(n for n in request.app[keys.SESSIONS].staff_available() if n != account.name)


@routes.get("/", name="workspace")
async def workspace(request: web.Request) -> web.StreamResponse:
    """The workspace page; its own URL is always exactly "/".

    The board's links to a pane are "/#pane-N": with any other URL here, following one would
    reload the whole page and lose what is typed in the panes.
    """
    session, account = signed_in(request)
    if request.query_string:
        raise see_other("/")
    present(request, session)
    return page(request, "staff/workspace.html", session, account=account, slots=slots(request, account))


@routes.get("/status", name="status")
async def status(request: web.Request) -> web.Response:
    """The availability frame: it changes only when its own button is pressed."""
    session, _ = signed_in(request)
    return page(request, "staff/status.html", session)


@routes.post("/availability", name="availability")
async def availability(request: web.Request) -> web.StreamResponse:
    """Available for new chats, or away."""
    session, _ = signed_in(request)
    form = await read_form(request, session)
    session.available = form.get("available") == "1"
    request.app[keys.CHAT].notify_board()  # waiting visitors and the boards learn whether anyone is there
    raise see_other("/status")


def board_frame(request: web.Request, session: Session, account: Account) -> Frame:
    """Your chats (one line per pane) and the waiting line, updating itself."""
    store: ChatStore = request.app[keys.CHAT]
    renderer = request.app[keys.RENDERER]
    name = account.name

    def stamp() -> str:
        lines = "".join(f"{c.slot}{c.awaiting_reply:d}" for c in store.held_chats(name))
        warned = signs_out_soon(request, session) is not None
        return f"{store.board_version}.{session.available:d}.{lines}.{warned:d}"

    def waiters() -> list[Waiter]:
        return [store.board_waiter(), *(c.waiter() for c in store.held_chats(name))]

    paused = request.query.get("paused") == "1"

    def render(current: str, url: str) -> bytes:
        held = {c.slot: c for c in store.held_chats(name)}
        limit = max_chats(request, account)
        count = pane_count(limit, held)
        queue = store.queue()
        return renderer.render(
            "staff/board.html", language(request, session), session=session, site="staff",
            slots=[(n, held.get(n)) for n in range(1, count + 1)], held=len(held), limit=limit,
            joined=[c for c in store.chats_of(name) if c.counsellor != name], queue=queue,
            rows=len(queue) if paused else QUEUE_ROWS, next_slot=store.free_slot(name, limit),
            urgent=[c for c in queue if c.urgent], available=colleagues(request, account),
            refresh_url=url, paused=paused, check=next_check(request),
            sign_out=signs_out_soon(request, session)).encode()

    return Frame(stamp=stamp, wait=lambda timeout: until_changed(stamp, waiters, timeout), render=render,
                 path="/board")


@routes.get("/board", name="board")
async def board(request: web.Request) -> web.Response:
    """The self-updating board of the workspace."""
    session, account = signed_in(request)
    present(request, session)
    return await serve_frame(request, board_frame(request, session, account), session)


@routes.post("/still-here", name="still_here")
async def still_here(request: web.Request) -> web.StreamResponse:
    """'I am still here': an action by the person, which is all the idle sign-out waits for."""
    session, _ = signed_in(request)
    form = await read_form(request, session)
    raise see_other("/alerts" if form.get("back") == "alerts" else "/board")


def held_in(request: web.Request, account: Account, pane: int) -> Conversation | None:
    """The open chat this counsellor holds in pane ``pane``, if any."""
    return next((c for c in request.app[keys.CHAT].held_chats(account.name) if c.slot == pane), None)


@routes.get("/pane/{n}", name="pane")
async def pane(request: web.Request) -> web.Response:
    """One pane: the chat it holds (messages, reply box, controls), or a free pane.

    Not self-updating: its reply box may hold a draft. A chat handed over to this counsellor
    is shown once they open it from the board.
    """
    session, account = signed_in(request)
    number = pane_number(request.match_info["n"], account, request)
    if not number:
        raise Refused(ErrorCode.NOT_FOUND)
    conv = held_in(request, account, number)
    if conv is not None:
        request.app[keys.CHAT].opened(conv, account.name)
    return page(request, "staff/pane.html", session, conv=conv, pane=number, account=account,
                colleagues=colleagues(request, account))


@routes.get("/alerts", name="alerts")
async def alerts(request: web.Request) -> web.Response:
    """The alerts tab: waiting count, replies due and urgent chats in its title and icon.

    It reloads itself every ``interval_seconds``, answered at once: a page whose next version
    is a held request looks as if it were always loading (the browser shows its spinner
    instead of the icon). Nothing on it can be lost by a reload.
    """
    session, account = signed_in(request)
    present(request, session)
    store = request.app[keys.CHAT]
    held = store.held_chats(account.name)
    waiting = store.waiting_count()
    replies = sum(1 for c in held if c.awaiting_reply)
    handed = sum(1 for c in held if c.handed_over)
    # Supervisors watch every chat; a counsellor the line and their own.
    urgent = len(urgent_live(request)) if is_supervisor(account) else sum(
        1 for c in [*store.queue(), *held] if c.urgent)
    delay = request.app[keys.CONFIG].poll.interval_seconds
    paused = request.query.get("paused") == "1"
    icon = request.app[keys.FAVICONS].alert(waiting, urgent=urgent > 0, reply=replies + handed > 0)
    response = page(request, "staff/alerts.html", session, waiting=waiting, replies=replies, handed=handed,
                    urgent=urgent, delay=delay, icon=icon, paused=paused, sign_out=signs_out_soon(request, session))
    if not paused:
        # "v", as a frame's own reloads carry it: a browser that sends no Sec-Fetch headers still
        # has this reload judged as the page's doing, not the person's (web.poll.by_person).
        response.headers["Refresh"] = f"{delay}; url=/alerts?v=1"
    return response
