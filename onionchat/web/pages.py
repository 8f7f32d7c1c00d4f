"""Helpers both sites use to answer with a page: language, rendering, redirects, the stylesheets."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from onionchat.sessions import Session
from onionchat.web import keys


def language(request: web.Request, session: Session | None) -> str:
    """The language of this person's pages: chosen on the page, else the site's default.

    Never guessed from Accept-Language: Tor Browser sends the same spoofed value for everyone.
    """
    if session is not None and session.lang in request.app[keys.SITE].languages:
        return session.lang
    return request.app[keys.DEFAULT_LANGUAGE]


def page(request: web.Request, template: str, session: Session | None, status: int = 200,
         **context: Any) -> web.Response:
    """Render ``template`` for this request's site and language."""
    body = request.app[keys.RENDERER].render(template, language(request, session), session=session,
                                             site=request.app[keys.SITE].site, **context)
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


async def favicon_ico(request: web.Request) -> web.Response:
    """/favicon.ico, which browsers ask for by themselves: the site's plain icon (a PNG), never a 404."""
    return web.Response(body=request.app[keys.SITE].icon, content_type="image/png",
                        headers={"Cache-Control": "private, max-age=86400"})
