"""Routes of the staff site: login, the self-updating dashboard, accepting and holding chats."""

from __future__ import annotations

import asyncio

from aiohttp import web

from onionchat import keys, websession
from onionchat.accounts import Account, Role
from onionchat.chat import Author, Conversation, EndReason, State
from onionchat.errors import ChatError
from onionchat.pages import page, see_other
from onionchat.poll import Frame, serve_frame, wait_any
from onionchat.render import DEFAULT_LANGUAGE
from onionchat.security import ERRORS, Refused, read_form
from onionchat.sessions import Session

routes = web.RouteTableDef()


def signed_in(request: web.Request, role: Role = Role.COUNSELLOR) -> tuple[Session, Account]:
    """The signed-in staff member with at least ``role``; otherwise off to the login page.

    Checked on every staff route, against the account as it is now: a removed or disabled
    account loses its session at its next request.
    """
    session = websession.current(request)
    if session is None or not session.staff:
        raise see_other("/login")
    account = request.app[keys.ACCOUNTS].get(session.staff)
    if account is None or account.disabled:
        request.app[keys.SESSIONS].drop(session)
        raise see_other("/login")
    if account.role.rank < role.rank:
        raise Refused("forbidden")
    return session, account


def own_conversation(request: web.Request, account: Account) -> Conversation:
    """The conversation in the URL, if this counsellor holds it (or it has just ended)."""
    conv = request.app[keys.CHAT].find(request.match_info["cid"])
    if conv is None or conv.counsellor != account.name:
        raise Refused("gone" if conv is None else "forbidden")
    return conv


def board_frame(request: web.Request, session: Session, account: Account) -> Frame:
    """The dashboard: the queue and this counsellor's chats, updating itself."""
    store = request.app[keys.CHAT]
    renderer = request.app[keys.RENDERER]

    def stamp() -> str:
        mine = store.chats_of(account.name)
        unread = sum(1 for c in mine if c.unread)
        return f"{store.board_version}.{unread}"

    async def wait(timeout: float) -> bool:
        waiters = [store.board_waiter()] + [c.waiter() for c in store.chats_of(account.name)]
        return await wait_any(waiters, timeout)

    def render(current: str, url: str) -> bytes:
        return renderer.render("staff/dashboard.html", DEFAULT_LANGUAGE, session=session, site="staff",
                               account=account, queue=store.queue(), mine=store.chats_of(account.name),
                               refresh_url=url, paused=request.query.get("paused") == "1").encode()

    return Frame(stamp=stamp, wait=wait, render=render, path="/")


@routes.get("/", name="dashboard")
async def dashboard(request: web.Request) -> web.Response:
    """Waiting queue, own chats, and the number waiting in the title."""
    session, account = signed_in(request)
    return await serve_frame(request, board_frame(request, session, account))


@routes.post("/accept/{cid}", name="accept")
async def accept(request: web.Request) -> web.StreamResponse:
    """Take a waiting visitor."""
    session, account = signed_in(request)
    await read_form(request, session)
    conv = request.app[keys.CHAT].accept(request.match_info["cid"], account.name,
                                         request.app[keys.CONFIG].staff.max_chats)
    raise see_other(f"/chat/{conv.id}")


@routes.get("/chat/{cid}", name="staff_chat")
async def chat(request: web.Request) -> web.Response:
    """One held chat: its frames, and links to this counsellor's other chats."""
    session, account = signed_in(request)
    conv = own_conversation(request, account)
    return page(request, "staff/chat.html", session, conv=conv, account=account, State=State)


@routes.get("/chat/{cid}/messages", name="staff_messages")
async def messages(request: web.Request) -> web.Response:
    """The counsellor's self-updating view of one conversation."""
    _, account = signed_in(request)
    conv = own_conversation(request, account)
    renderer = request.app[keys.RENDERER]
    paused = request.query.get("paused") == "1"

    def render(current: str, url: str) -> bytes:
        conv.staff_seen = conv.messages[-1].seq if conv.messages else 0
        key = "staff-paused" if paused else "staff"
        cached = conv.rendered.get(key)
        if cached is not None and cached[0] == current:
            return cached[1]
        body = renderer.render("staff/messages.html", DEFAULT_LANGUAGE, conv=conv, refresh_url=url,
                               paused=paused, Author=Author, State=State, EndReason=EndReason,
                               site="staff").encode()
        conv.rendered[key] = (current, body)
        return body

    conv.touch()
    frame = Frame(stamp=lambda: str(conv.version), wait=lambda t: conv.waiter()(t), render=render,
                  path=f"/chat/{conv.id}/messages", final=lambda: conv.state is State.ENDED)
    return await serve_frame(request, frame)


@routes.get("/chat/{cid}/compose", name="staff_compose")
async def compose(request: web.Request) -> web.Response:
    """The counsellor's compose form; never reloads by itself."""
    session, account = signed_in(request)
    conv = own_conversation(request, account)
    return page(request, "staff/compose.html", session, conv=conv, text="", error=None, State=State)


@routes.post("/chat/{cid}/send", name="staff_send")
async def send(request: web.Request) -> web.StreamResponse:
    """Send a message to the visitor; on refusal the text comes back."""
    session, account = signed_in(request)
    conv = own_conversation(request, account)
    form = await read_form(request, session)
    text = form.get("text", "")
    try:
        request.app[keys.CHAT].post(conv.id, Author.STAFF, text, sender=account.name)
    except ChatError as exc:
        status, title, explanation = ERRORS.get(exc.code, ERRORS["bad_request"])
        return page(request, "staff/compose.html", session, status=status, conv=conv, text=text,
                    error=(title, explanation), State=State)
    raise see_other(f"/chat/{conv.id}/compose")


@routes.post("/chat/{cid}/end", name="staff_end")
async def end(request: web.Request) -> web.StreamResponse:
    """End the chat: the visitor is told, the text is wiped from memory."""
    session, account = signed_in(request)
    conv = own_conversation(request, account)
    await read_form(request, session)
    request.app[keys.CHAT].end(conv.id, EndReason.STAFF_ENDED)
    raise see_other("/")


@routes.get("/mychats", name="mychats")
async def mychats(request: web.Request) -> web.Response:
    """A small self-updating list of this counsellor's chats, marking those with new messages."""
    session, account = signed_in(request)
    store = request.app[keys.CHAT]
    renderer = request.app[keys.RENDERER]
    requested = request.query.get("current", "")
    # Only an id of one's own chats goes back into a URL: nothing else is echoed.
    current_id = next((c.id for c in store.chats_of(account.name) if c.id == requested), "")

    def stamp() -> str:
        mine = store.chats_of(account.name)
        return ".".join([str(store.board_version)] + [f"{c.version}" for c in mine])

    async def wait(timeout: float) -> bool:
        waiters = [store.board_waiter()] + [c.waiter() for c in store.chats_of(account.name)]
        return await wait_any(waiters, timeout)

    def render(current: str, url: str) -> bytes:
        return renderer.render("staff/mychats.html", DEFAULT_LANGUAGE, mine=store.chats_of(account.name),
                               current_id=current_id, queue_length=len(store.queue()), refresh_url=url,
                               site="staff", session=session).encode()

    path = f"/mychats?current={current_id}" if current_id else "/mychats"
    return await serve_frame(request, Frame(stamp=stamp, wait=wait, render=render, path=path))
