"""Staff sign-in and sign-out: password check off the event loop, per-account throttling."""

from __future__ import annotations

import asyncio

from aiohttp import web

from onionchat import keys, websession
from onionchat.pages import page, see_other
from onionchat.security import ERRORS, read_form

routes = web.RouteTableDef()


@routes.get("/login", name="login")
async def login_form(request: web.Request) -> web.Response:
    """Username, Password, Log in."""
    session, new = websession.ensure(request)
    response = page(request, "staff/login.html", session, error=None)
    if new:
        websession.set_cookie(request, response, session)
    return response


@routes.post("/login", name="login_post")
async def login(request: web.Request) -> web.StreamResponse:
    """Check the password off the event loop; regenerate the session on success."""
    session = websession.current(request)
    form = await read_form(request, session)
    assert session is not None
    name = form.get("username", "").strip().lower()[:64]
    password = form.get("password", "")
    accounts = request.app[keys.ACCOUNTS]
    throttle = request.app[keys.LOGIN_THROTTLE]
    known = accounts.get(name) is not None
    if throttle.blocked(name, known):
        return page(request, "staff/login.html", session, status=429, error=ERRORS["login_throttled"][1:])
    async with request.app[keys.HASH_SLOTS]:
        # argon2id takes ~0.1 s of two cores: never on the event loop, and one at a time so
        # that a burst of logins cannot starve the chats.
        account = await asyncio.to_thread(accounts.verify, name, password)
    if account is None:
        throttle.failed(name, known)
        return page(request, "staff/login.html", session, status=403, error=ERRORS["login_failed"][1:])
    throttle.succeeded(name)
    session = request.app[keys.SESSIONS].regenerate(session)
    session.staff = account.name
    response = see_other("/")
    websession.set_cookie(request, response, session)
    raise response


@routes.post("/logout", name="logout")
async def logout(request: web.Request) -> web.StreamResponse:
    """End the staff session (open chats stay open for a colleague or the sweeper)."""
    session = websession.current(request)
    await read_form(request, session)
    if session is not None:
        request.app[keys.SESSIONS].drop(session)
    response = see_other("/login")
    websession.clear_cookie(request, response)
    raise response
