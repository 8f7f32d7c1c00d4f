"""Every typed ``web.AppKey`` of onionchat, and what tells the two sites apart."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from aiohttp import web

from onionchat import i18n
from onionchat.accounts import AccountStore
from onionchat.audit import AuditLog
from onionchat.canned import CannedReplies
from onionchat.chat import ChatStore
from onionchat.circuits import CircuitBudgets
from onionchat.config import Config
from onionchat.hours import OfficeHours
from onionchat.sessions import SessionStore
from onionchat.stats import Stats
from onionchat.throttle import LoginThrottle
from onionchat.totp import PendingSteps
from onionchat.turns import FairTurns
from onionchat.web import favicon
from onionchat.web.proxy import Listener
from onionchat.web.render import Renderer


class Site(enum.StrEnum):
    """Which site a page belongs to (templates choose their header by it)."""

    VISITOR = "visitor"
    STAFF = "staff"


@dataclass(frozen=True, slots=True)
class SiteSpec:
    """What the shared web code needs to know about the site it serves: data, not branches."""

    site: Site
    cookie: str  # one cookie name per site: a browser using both never mixes the sessions
    languages: tuple[str, ...]  # languages a person may choose on this site's pages
    return_to: tuple[str, ...]  # where a language link may lead back to (never an open redirect)
    icon: bytes  # /favicon.ico: a PNG
    cookie_prefix: str = field(init=False, repr=False)  # "name=", as it starts in a Cookie header

    def __post_init__(self) -> None:
        object.__setattr__(self, "cookie_prefix", f"{self.cookie}=")  # once, not on every request


VISITOR_SITE = SiteSpec(Site.VISITOR, "oc_visitor", i18n.VISITOR_LANGUAGES,
                        ("/", "/chat", "/safety", "/goodbye", "/danger"), favicon.VISITOR_ICON)
STAFF_SITE = SiteSpec(Site.STAFF, "oc_staff", i18n.STAFF_LANGUAGES, ("/", "/login", "/account"), favicon.STAFF_ICON)

CONFIG = web.AppKey("config", Config)
SITE = web.AppKey("site", SiteSpec)
DEFAULT_LANGUAGE = web.AppKey("default_language", str)  # until the person picks one on the page
CHAT = web.AppKey("chat", ChatStore)
ACCOUNTS = web.AppKey("accounts", AccountStore)
SESSIONS = web.AppKey("sessions", SessionStore)  # the sessions of this site (visitor or staff)
RENDERER = web.AppKey("renderer", Renderer)
LOGIN_THROTTLE = web.AppKey("login_throttle", LoginThrottle)
STAFF_SESSIONS = web.AppKey("staff_sessions", SessionStore)  # both sites: who is online
HASH_TURNS = web.AppKey("hash_turns", FairTurns)  # turns at argon2, fair between circuits and names
AUDIT = web.AppKey("audit", AuditLog)
CANNED = web.AppKey("canned", CannedReplies)
STATS = web.AppKey("stats", Stats)
HOURS = web.AppKey("hours", OfficeHours)
PENDING = web.AppKey("pending_steps", PendingSteps)  # staff: logins between password and code
FAVICONS = web.AppKey("favicons", favicon.Favicons)  # staff: the alert icons drawn so far
CIRCUITS = web.AppKey("circuits", CircuitBudgets)  # the visitors' per-circuit budgets (both sites see them)
LISTENER = web.AppKey("listener", Listener)  # this site's connections: PROXY lines, circuits, deadlines
