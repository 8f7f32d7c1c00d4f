"""Every typed ``web.AppKey`` of onionchat, in one place."""

from __future__ import annotations

import asyncio

from aiohttp import web

from onionchat.accounts import AccountStore
from onionchat.audit import AuditLog
from onionchat.canned import CannedReplies
from onionchat.chat import ChatStore
from onionchat.config import Config
from onionchat.hours import OfficeHours
from onionchat.render import Renderer
from onionchat.sessions import SessionStore
from onionchat.stats import Stats
from onionchat.throttle import LoginThrottle
from onionchat.totp import PendingSteps

CONFIG = web.AppKey("config", Config)
CHAT = web.AppKey("chat", ChatStore)
ACCOUNTS = web.AppKey("accounts", AccountStore)
SESSIONS = web.AppKey("sessions", SessionStore)  # the sessions of this site (visitor or staff)
RENDERER = web.AppKey("renderer", Renderer)
LOGIN_THROTTLE = web.AppKey("login_throttle", LoginThrottle)
SITE = web.AppKey("site", str)  # "visitor" or "staff": which error pages and cookie to use
STAFF_SESSIONS = web.AppKey("staff_sessions", SessionStore)  # both sites: who is online
HASH_SLOTS = web.AppKey("hash_slots", asyncio.Semaphore)  # argon2 hashes running at once
AUDIT = web.AppKey("audit", AuditLog)
CANNED = web.AppKey("canned", CannedReplies)
STATS = web.AppKey("stats", Stats)
HOURS = web.AppKey("hours", OfficeHours)
PENDING = web.AppKey("pending_steps", PendingSteps)  # staff: logins between password and code
