"""Wiring shared by both sites: the services of one process, and the parts every app has."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from onionchat.accounts import AccountStore
from onionchat.audit import AuditLog
from onionchat.canned import CannedReplies
from onionchat.chat import ChatStore, State
from onionchat.circuits import CircuitBudgets
from onionchat.config import Config
from onionchat.hours import OfficeHours
from onionchat.sessions import Session, SessionStore
from onionchat.stats import Stats
from onionchat.throttle import LoginBudget, LoginThrottle
from onionchat.turns import FairTurns
from onionchat.web import keys, language
from onionchat.web.guard import guard
from onionchat.web.keys import SiteSpec
from onionchat.web.pages import favicon_ico, style
from onionchat.web.proxy import Listener
from onionchat.web.render import Renderer

log = logging.getLogger("onionchat")

SWEEP_SECONDS = 10.0
FLUSH_SECONDS = 5.0  # stored counts and audit entries reach the disk within this time
STAFF_CONNECTIONS = 2_000  # a team's browsers, a few frames each: far beyond any helpline's staff


def keep_flushed(flush: Callable[[], Awaitable[None]]) -> Callable[[web.Application], AsyncIterator[None]]:
    """A cleanup_ctx that calls ``flush`` every few seconds, and once more at shutdown."""

    async def context(app: web.Application) -> AsyncIterator[None]:
        async def run() -> None:
            while True:
                await asyncio.sleep(FLUSH_SECONDS)
                await flush()

        task = asyncio.create_task(run())
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await flush()

    return context


@dataclass(frozen=True, slots=True)
class Services:
    """What both sites share: one chat store, the accounts, and both session stores."""

    config: Config
    chat: ChatStore
    accounts: AccountStore
    visitor_sessions: SessionStore
    staff_sessions: SessionStore
    renderer: Renderer
    login_throttle: LoginThrottle
    hash_turns: FairTurns
    audit: AuditLog
    canned: CannedReplies
    stats: Stats
    hours: OfficeHours
    circuits: CircuitBudgets  # what each circuit may spend on the visitor site
    visitor_listener: Listener
    staff_listener: Listener


def left_after(config: Config) -> float:
    """Seconds a waiting visitor's page may stay silent before they count as gone: three refreshes."""
    poll = config.poll
    return 3 * max(poll.hold_seconds, poll.interval_seconds) + 10.0


def login_throttle(config: Config) -> LoginThrottle:
    """The staff login throttle with the configured budgets."""
    staff = config.staff
    return LoginThrottle(LoginBudget(per_name_and_circuit=staff.login_attempts,
                                     per_circuit=staff.login_attempts_per_circuit,
                                     per_name=staff.login_attempts_per_account,
                                     window=staff.login_window_seconds))


def build_services(config: Config, accounts: AccountStore | None = None) -> Services:
    """Create the in-memory stores for one server process."""
    limits = config.limits
    circuits = CircuitBudgets(config.circuits)
    chat = ChatStore(limits, circuits=circuits, left_after=left_after(config))

    def live_chat(session: Session) -> bool:
        """The session holds a chat that goes on (not ended, not resumed in another browser since)."""
        conv = chat.find(session.conversation)
        return conv is not None and conv.state is not State.ENDED and conv.attached == session.attached

    services = Services(
        config=config,
        chat=chat,
        accounts=accounts or AccountStore(config.data_dir, password_min=config.staff.password_min),
        visitor_sessions=SessionStore(limits.sessions, limits.idle_minutes * 60, limits.resume_attempts,
                                      per_circuit=config.circuits.sessions, bounded=circuits.applies,
                                      live_chat=live_chat),
        staff_sessions=SessionStore(1000, config.staff.idle_minutes * 60, idle_by_action=True,
                                    lifetime_seconds=config.staff.session_hours * 3600,
                                    presence_seconds=config.poll.presence_seconds()),
        renderer=Renderer(config),
        login_throttle=login_throttle(config),
        # One argon2id hash at a time: it already uses both cores (parallelism 2), and the
        # chats must keep some CPU during a burst of logins.
        hash_turns=FairTurns(1),
        audit=AuditLog(config.data_dir, config.staff.audit_days, keep_chat_ids=config.staff.audit_chat_ids,
                       chat_time=config.staff.audit_chat_time),
        canned=CannedReplies(config.data_dir),
        stats=Stats(config.data_dir, batch=config.stats.suppress_below),
        hours=OfficeHours.parse(config.hours.timezone, config.hours.weekly, config.hours.closed_dates),
        circuits=circuits,
        visitor_listener=Listener(limits.request_seconds, circuits, max_open=limits.open_connections),
        staff_listener=Listener(limits.request_seconds, max_open=STAFF_CONNECTIONS),
    )
    services.chat.subscribe(services.stats.on_event)
    services.chat.subscribe(services.audit.on_event)
    return services


async def sweeper(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx: end idle chats, drop ended ones and idle sessions, pick up account changes."""
    accounts = app[keys.ACCOUNTS]

    async def run() -> None:
        available = app[keys.STAFF_SESSIONS].staff_available()
        while True:
            await asyncio.sleep(SWEEP_SECONDS)
            app[keys.CHAT].sweep()
            app[keys.SESSIONS].sweep()
            app[keys.STAFF_SESSIONS].sweep()
            # A counsellor whose browser closed stops counting without any request: tell the
            # waiting visitors and the boards.
            now_available = app[keys.STAFF_SESSIONS].staff_available()
            if now_available != available:
                available = now_available
                app[keys.CHAT].notify_board()
            try:
                changed = await asyncio.to_thread(accounts.reload_if_changed)
            except Exception as exc:  # noqa: BLE001 - a damaged file must not stop the sweeper
                log.error("cannot re-read staff accounts: %s", exc)
                continue
            if changed:
                # A change made with the command line (password, 2FA reset, role, disabled,
                # removed) signs the account's sessions out now, not only at their next click.
                app[keys.STAFF_SESSIONS].sign_out_where(
                    lambda s: accounts.signed_in(s.staff, s.staff_generation) is None)

    task = asyncio.create_task(run())
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def new_app(services: Services, site: SiteSpec, sessions: SessionStore, default_language: str,
            listener: Listener) -> web.Application:
    """An application with what every site has: services, the guard, headers, languages, CSS.

    Each site's own ``create_app`` (onionchat.visitor, onionchat.staff) passes its sessions,
    default language and listener, and adds its routes.
    """
    config = services.config
    app = web.Application(middlewares=[guard], client_max_size=config.limits.body_bytes)
    app[keys.SITE] = site
    app[keys.DEFAULT_LANGUAGE] = default_language
    app[keys.CONFIG] = config
    app[keys.CHAT] = services.chat
    app[keys.ACCOUNTS] = services.accounts
    app[keys.RENDERER] = services.renderer
    app[keys.SESSIONS] = sessions
    app[keys.STAFF_SESSIONS] = services.staff_sessions
    app[keys.LOGIN_THROTTLE] = services.login_throttle
    app[keys.HASH_TURNS] = services.hash_turns
    app[keys.AUDIT] = services.audit
    app[keys.CANNED] = services.canned
    app[keys.STATS] = services.stats
    app[keys.HOURS] = services.hours
    app[keys.CIRCUITS] = services.circuits
    app[keys.LISTENER] = listener
    app.add_routes(language.routes)
    app.router.add_get("/static/style.css", style, name="style")
    app.router.add_get("/favicon.ico", favicon_ico, name="favicon")
    return app
