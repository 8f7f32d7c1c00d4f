"""Who may do what on the staff site: the signed-in check every staff route makes, and its pages."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from aiohttp import web

from onionchat.accounts import Account, Role, effective_max_chats
from onionchat.chat import Conversation
from onionchat.errors import ErrorCode
from onionchat.sessions import Session
from onionchat.web import circuit, cookies, keys, pages
from onionchat.web.guard import Refused
from onionchat.web.pages import see_other


def signed_in(request: web.Request, role: Role = Role.COUNSELLOR) -> tuple[Session, Account]:
    """The signed-in staff member with at least ``role``; otherwise off to the login page.

    Checked on every staff route, against the account as it is now: a removed or disabled
    account, or one whose password, 2FA or role changed since this session signed in (on the
    web or with the command line), loses the session at its next request.
    """
    session = cookies.current(request)
    if session is None or not session.staff:
        raise see_other("/login")
    account = request.app[keys.ACCOUNTS].signed_in(session.staff, session.staff_generation)
    if account is None:
        request.app[keys.SESSIONS].drop(session)
        raise see_other("/login")
    if account.role.rank < role.rank:
        raise Refused(ErrorCode.FORBIDDEN)
    return session, account


def is_supervisor(account: Account) -> bool:
    """Supervisors and admins may watch every chat."""
    return account.role.rank >= Role.SUPERVISOR.rank


def conversation(request: web.Request, account: Account, *, write: bool = True) -> Conversation:
    """The conversation in the URL if this staff member may see it (write: take part in it).

    Counsellors reach only the chats they hold; supervisors may read every chat, and write
    only in those they joined. An ended chat stays readable to whoever held it.
    """
    conv = request.app[keys.CHAT].find(request.match_info["cid"])
    if conv is None:
        raise Refused(ErrorCode.GONE)
    if conv.has_staff(account.name) or (not write and is_supervisor(account)):
        return conv
    raise Refused(ErrorCode.FORBIDDEN)


def max_chats(request: web.Request, account: Account) -> int:
    """How many chats this counsellor may hold at once (their own limit, else the configured one)."""
    return effective_max_chats(account, request.app[keys.CONFIG])


def pane_count(limit: int, held_slots: Iterable[int]) -> int:
    """How many chat panes a workspace has: the counsellor's limit, or more if they hold more."""
    return max(limit, max(held_slots, default=0))


def slots(request: web.Request, account: Account) -> int:
    """How many chat panes this counsellor's workspace has (pane_count of what they hold now)."""
    held = request.app[keys.CHAT].held_chats(account.name)
    return pane_count(max_chats(request, account), (c.slot for c in held))


def signed_out_elsewhere(request: web.Request, session: Session, name: str) -> None:
    """Sign ``name`` out of every session but this one, which follows the account's new generation."""
    account = request.app[keys.ACCOUNTS].get(name)
    if account is not None and session.staff == name:
        session.staff_generation = account.generation  # someone changing their own account stays in
    request.app[keys.SESSIONS].drop_staff(name, keep=session)


def pane_number(value: str, account: Account, request: web.Request) -> int:
    """The workspace pane a form or URL names (1..), or 0 for none or anything else."""
    if not value.isdigit() or len(value) > 3:
        return 0
    number = int(value)
    return number if 1 <= number <= slots(request, account) else 0


def present(request: web.Request, session: Session) -> None:
    """A staff page of this browser is open and asking: it counts for presence (not as activity)."""
    request.app[keys.SESSIONS].mark_present(session)


def urgent_live(request: web.Request) -> list[Conversation]:
    """Urgent chats that are waiting or open."""
    return [c for c in request.app[keys.CHAT].live() if c.urgent]


def page(request: web.Request, template: str, session: Session | None, status: int = 200,
         **context: Any) -> web.Response:
    """A staff page: as web.pages.page, with the signed-in person's role for the menu."""
    if session is not None and session.staff and "staff_role" not in context:
        account = request.app[keys.ACCOUNTS].get(session.staff)
        context["staff_role"] = account.role.value if account else ""
    return pages.page(request, template, session, status, **context)


T = TypeVar("T")


async def at_hash_turn(request: web.Request, name: str, work: Callable[..., T], *args: Any) -> T:
    """Run argon2 ``work(*args)`` in a worker thread at this circuit's and ``name``'s fair turn."""
    async with request.app[keys.HASH_TURNS].turn(circuit=circuit.circuit_of(request), name=name):
        return await asyncio.to_thread(work, *args)


def pane_or_workspace(pane: int) -> str:
    """Where a form of pane ``pane`` goes back to: that pane, or the workspace (0: none)."""
    return f"/pane/{pane}" if pane else "/"
