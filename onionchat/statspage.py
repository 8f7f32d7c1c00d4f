"""The wrap-up form after a chat, and the anonymous statistics page with CSV export."""

from __future__ import annotations

from aiohttp import web

routes = web.RouteTableDef()
