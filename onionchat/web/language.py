"""Choosing the language on the page (both sites): a plain link per language, remembered in the session."""

from __future__ import annotations

import time

from aiohttp import web

from onionchat.chat import State
from onionchat.web import cookies, keys
from onionchat.web.pages import see_other

routes = web.RouteTableDef()


@routes.get("/lang/{code}", name="language")
async def choose(request: web.Request) -> web.StreamResponse:
    """Remember the chosen language for this session and go back to the page it was chosen on.

    A GET link rather than a CSRF-checked form: it changes nothing but how this browser's own
    pages are worded (no data, nothing another person sees except the language tag on the
    counsellor's screen), it works as a plain link in every browser at Safest, and the session
    cookie is SameSite=Strict, so a link on another site cannot change an existing session.
    """
    site = request.app[keys.SITE]
    code = request.match_info["code"]
    if code not in site.languages:
        raise web.HTTPNotFound()
    session, new = cookies.ensure(request)
    session.lang = code
    back = request.query.get("next", "/")
    if back not in site.return_to:
        back = "/"
    if session.conversation:  # a visitor in a chat
        conv = request.app[keys.CHAT].find(session.conversation)
        if conv is not None and conv.state is not State.ENDED and conv.lang != code:
            conv.lang = code  # the counsellor sees the visitor's language change
            request.app[keys.CHAT].notify_board()
        if back == "/chat" and session.passphrase_again and time.monotonic() < session.passphrase_until:
            # Shown a moment ago in a language the visitor may not read: once more, in theirs.
            session.passphrase, session.passphrase_again = session.passphrase_again, ""
    response = see_other(back)
    if new:
        cookies.set_cookie(request, response, session)
    raise response
