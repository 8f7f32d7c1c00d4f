"""Supervisor pages: every live chat at a glance, signs of a flood, a read-only view of each, and joining one."""

from __future__ import annotations

from aiohttp import web

from onionchat.accounts import Role
from onionchat.web import keys
from onionchat.web.csrf import read_form
from onionchat.web.pages import language, see_other
from onionchat.web.poll import Frame, next_check, serve_frame

from .access import conversation, page, present, signed_in
from .chats import staff_messages_frame

routes = web.RouteTableDef()


@routes.get("/supervise", name="supervise")
async def overview(request: web.Request) -> web.Response:
    """Every waiting and open chat, urgent first, updating itself."""
    session, _ = signed_in(request, Role.SUPERVISOR)
    present(request, session)
    store = request.app[keys.CHAT]
    renderer = request.app[keys.RENDERER]

    def stamp() -> str:
        return str(store.board_version)

    def render(current: str, url: str) -> bytes:
        return renderer.render("staff/supervise.html", language(request, session), session=session, site="staff",
                               chats=store.live(), refresh_url=url, signs=request.app[keys.CIRCUITS].signs(),
                               line=store.line_signs(), cleared=request.query.get("cleared", ""),
                               paused=request.query.get("paused") == "1", check=next_check(request)).encode()

    frame = Frame(stamp=stamp, wait=lambda t: store.board_waiter()(t), render=render, path="/supervise")
    return await serve_frame(request, frame, session)


@routes.post("/supervise/clear-flood", name="supervise_clear_flood")
async def clear_flood(request: web.Request) -> web.StreamResponse:
    """End, in one action, the waiting chats that look like a flood (ChatStore.clear_flood says which)."""
    session, account = signed_in(request, Role.SUPERVISOR)
    await read_form(request, session)
    cleared = request.app[keys.CHAT].clear_flood(account.name)
    raise see_other(f"/supervise?cleared={cleared}")


@routes.get("/supervise/{cid}", name="supervise_chat")
async def watch(request: web.Request) -> web.Response:
    """A read-only view of one chat, with the staff-only line and the option to join."""
    session, account = signed_in(request, Role.SUPERVISOR)
    conv = conversation(request, account, write=False)
    return page(request, "staff/watch.html", session, conv=conv,
                joined=conv.has_staff(account.name))


@routes.get("/supervise/{cid}/messages", name="supervise_messages")
async def watch_messages(request: web.Request) -> web.Response:
    """The self-updating read-only messages frame for a supervisor."""
    session, account = signed_in(request, Role.SUPERVISOR)
    conv = conversation(request, account, write=False)
    present(request, session)
    return await serve_frame(request, staff_messages_frame(request, account, conv,
                                                           f"/supervise/{conv.id}/messages"), session)


@routes.get("/supervise/{cid}/line", name="supervise_line")
async def line(request: web.Request) -> web.Response:
    """A small frame to write a staff-only line to the counsellor."""
    session, account = signed_in(request, Role.SUPERVISOR)
    conv = conversation(request, account, write=False)
    return page(request, "staff/line.html", session, conv=conv)


@routes.post("/supervise/{cid}/join", name="supervise_join")
async def join(request: web.Request) -> web.StreamResponse:
    """Step into the chat: the supervisor can then write to the visitor too."""
    session, account = signed_in(request, Role.SUPERVISOR)
    conv = conversation(request, account, write=False)
    await read_form(request, session)
    request.app[keys.CHAT].join(conv.id, account.name)
    raise see_other(f"/chat/{conv.id}")
