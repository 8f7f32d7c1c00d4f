"""The staff site: counsellors, supervisors and administrators, on its own (client-auth) onion."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from onionchat import i18n
from onionchat.totp import PendingSteps
from onionchat.web import keys
from onionchat.web.app import Services, keep_flushed, new_app
from onionchat.web.favicon import Favicons
from onionchat.web.keys import STAFF_SITE

from . import admin, auth, chats, statistics, supervise, workspace


def prepared(services: Services) -> Callable[[web.Application], AsyncIterator[None]]:
    """A cleanup_ctx making the hash unknown names are checked against, in a worker thread.

    In the background: listening does not wait for it (a login that comes first makes it itself).
    """
    async def context(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(asyncio.to_thread(services.accounts.prepare))
        yield
        await task

    return context


def create_app(services: Services) -> web.Application:
    """The staff application (its own port; it shares no route with the visitor site)."""
    app = new_app(services, STAFF_SITE, services.staff_sessions, i18n.SOURCE_LANGUAGE, services.staff_listener)
    app[keys.PENDING] = PendingSteps()
    app[keys.FAVICONS] = Favicons()
    for module in (auth, workspace, chats, supervise, admin, statistics):
        app.add_routes(module.routes)
    app.cleanup_ctx.append(prepared(services))
    app.cleanup_ctx.append(keep_flushed(services.audit.flush))  # audit.json, off the event loop
    app.cleanup_ctx.append(keep_flushed(services.stats.flush))  # stats.json, off the event loop
    return app
