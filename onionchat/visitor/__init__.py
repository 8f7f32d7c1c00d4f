"""The visitor site: anonymous chat for the people the helpline is for."""

from __future__ import annotations

from aiohttp import web

from onionchat.web import pages
from onionchat.web.app import Services, new_app, sweeper
from onionchat.web.keys import VISITOR_SITE

from .routes import routes


def create_app(services: Services) -> web.Application:
    """The visitor application (its own port; it shares no route with the staff site)."""
    app = new_app(services, VISITOR_SITE, services.visitor_sessions, services.config.visitor.default_language,
                  services.visitor_listener)
    app.add_routes(routes)
    # Only visitor pages carry the "set Safest" banner that this stylesheet hides.
    app.router.add_get("/static/nojs.css", pages.nojs_style, name="nojs_style")
    app.cleanup_ctx.append(sweeper)
    return app
