"""Helpers both sites use to answer with a page: rendering, redirects, the stylesheet."""

from __future__ import annotations

from aiohttp import web

from onionchat import i18n, keys
from onionchat.sessions import Session


def language(request: web.Request, session: Session | None) -> str:
    """The language of this person's pages: chosen on the page, else the site's default.

    Never guessed from Accept-Language: Tor Browser sends the same spoofed value for everyone.
    """
    if request.app[keys.SITE] == "staff":
        return session.lang if session is not None and session.lang in i18n.STAFF_LANGUAGES else "en"
    if session is not None and session.lang in i18n.VISITOR_LANGUAGES:
        return session.lang
    return request.app[keys.CONFIG].visitor.default_language


def page(request: web.Request, template: str, session: Session | None, status: int = 200,
         **context: object) -> web.Response:
    """Render ``template`` for this request's site and language."""
    site = request.app[keys.SITE]
    if site == "staff" and session is not None and session.staff and "staff_role" not in context:
        account = request.app[keys.ACCOUNTS].get(session.staff)
        context["staff_role"] = account.role.value if account else ""
    body = request.app[keys.RENDERER].render(template, language(request, session), session=session, site=site,
                                             **context)
    return web.Response(status=status, text=body, content_type="text/html", charset="utf-8")


def see_other(location: str) -> web.HTTPSeeOther:
    """A post/redirect/get answer (relative: the onion's host name is never needed)."""
    return web.HTTPSeeOther(location)


async def nojs_style(request: web.Request) -> web.Response:
    """The stylesheet loaded only inside <noscript>: it hides the "set Safest" warning."""
    return web.Response(body=request.app[keys.RENDERER].nojs_css, content_type="text/css", charset="utf-8",
                        headers={"Cache-Control": "private, max-age=86400"})


async def style(request: web.Request) -> web.Response:
    """The one stylesheet, cacheable in memory by its versioned URL."""
    renderer = request.app[keys.RENDERER]
    return web.Response(body=renderer.css, content_type="text/css", charset="utf-8",
                        headers={"Cache-Control": "private, max-age=86400, immutable"})
