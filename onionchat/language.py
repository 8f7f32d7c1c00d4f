"""Choosing the language on the page (both sites): a plain link per language, remembered in the session."""

from __future__ import annotations

import time
from typing import Final

from aiohttp import web

from onionchat import i18n, keys, websession
from onionchat.chat import State
from onionchat.pages import see_other

routes = web.RouteTableDef()

# Where a language link may lead back to: a fixed list, so the link is never an open redirect.
RETURN_TO: Final = {
    "visitor": ("/", "/chat", "/safety", "/goodbye"),
    "staff": ("/", "/login", "/account"),
}


@routes.get("/lang/{code}", name="language")
async def choose(request: web.Request) -> web.StreamResponse:
    """Remember the chosen language for this session and go back to the page it was chosen on.

    A GET link rather than a CSRF-checked form: it changes nothing but how this browser's own
    pages are worded (no data, nothing another person sees except the language tag on the
    counsellor's screen), it works as a plain link in every browser at Safest, and the session
    cookie is SameSite=Strict, so a link on another site cannot change an existing session.
    """
    site = request.app[keys.SITE]
    allowed = i18n.STAFF_LANGUAGES if site == "staff" else i18n.VISITOR_LANGUAGES
    code = request.match_info["code"]
    if code not in allowed:
        raise web.HTTPNotFound()
    session, new = websession.ensure(request)
    session.lang = code
    back = request.query.get("next", "/")
    if back not in RETURN_TO[site]:
        back = "/"
    if site == "visitor" and session.conversation:
        conv = request.app[keys.CHAT].find(session.conversation)
        if conv is not None and conv.state is not State.ENDED and conv.lang != code:
            conv.lang = code  # the counsellor sees the visitor's language change
            request.app[keys.CHAT].notify_board()
        if back == "/chat" and session.passphrase_again and time.monotonic() < session.passphrase_until:
            # Shown a moment ago in a language the visitor may not read: once more, in theirs.
            session.passphrase, session.passphrase_again = session.passphrase_again, ""
    response = see_other(back)
    if new:
        websession.set_cookie(request, response, session)
    raise response
