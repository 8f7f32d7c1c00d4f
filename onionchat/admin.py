"""Admin pages: staff accounts, canned replies, the audit log."""

from __future__ import annotations

from aiohttp import web

routes = web.RouteTableDef()
