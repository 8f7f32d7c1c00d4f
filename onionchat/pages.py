"""Helpers both sites use to answer with a page: rendering, redirects, the stylesheet."""

from __future__ import annotations

from aiohttp import web

from onionchat import keys
from onionchat.render import DEFAULT_LANGUAGE
from onionchat.sessions import Session


def page(request: web.Request, template: str, session: Session | None, status: int = 200,
         **context: object) -> web.Response:
    """Render ``template`` for this request's site and language."""
    site = request.app[keys.SITE]
    if site == "staff" and session is not None and session.staff and "staff_role" not in context:
        account = request.app[keys.ACCOUNTS].get(session.staff)
        context["staff_role"] = account.role.value if account else ""
    body = request.app[keys.RENDERER].render(template, DEFAULT_LANGUAGE, session=session, site=site, **context)
    return web.Response(status=status, text=body, content_type="text/html", charset="utf-8")


def see_other(location: str) -> web.HTTPSeeOther:
    """A post/redirect/get answer (relative: the onion's host name is never needed)."""
    return web.HTTPSeeOther(location)


async def style(request: web.Request) -> web.Response:
    """The one stylesheet, cacheable in memory by its versioned URL."""
    renderer = request.app[keys.RENDERER]
    return web.Response(body=renderer.css, content_type="text/css", charset="utf-8",
                        headers={"Cache-Control": "private, max-age=86400, immutable"})
