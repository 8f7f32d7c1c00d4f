"""Admin pages: staff accounts, canned replies, the audit log; every route needs the admin role."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from aiohttp import web

from onionchat.accounts import Account, AccountStore, Role
from onionchat.canned import CannedError
from onionchat.errors import AccountError, ErrorCode
from onionchat.i18n import LANGUAGES
from onionchat.sessions import Session
from onionchat.web import keys
from onionchat.web.csrf import read_form
from onionchat.web.guard import Refused
from onionchat.web.pages import see_other

from .access import at_hash_turn, page, signed_in, signed_out_elsewhere

routes = web.RouteTableDef()

AUDIT_PAGE = 100  # entries per page of the audit log


def admin(request: web.Request) -> tuple[Session, Account]:
    """The signed-in admin; anyone else is refused."""
    return signed_in(request, Role.ADMIN)


def refused(request: web.Request, session: Session, reason: str, back: str) -> web.Response:
    """Nothing was changed, and why, with the way back."""
    return page(request, "staff/admin/refused.html", session, status=409, reason=reason, back=back)


def target(request: web.Request) -> Account:
    """The account named in the URL."""
    account = request.app[keys.ACCOUNTS].get(request.match_info["name"])
    if account is None:
        raise Refused(ErrorCode.NOT_FOUND)
    return account


# Staff accounts


@routes.get("/admin/staff", name="admin_staff")
async def staff_list(request: web.Request) -> web.Response:
    """Every account with its role, state and 2FA; the form to add one."""
    session, me = admin(request)
    return page(request, "staff/admin/staff.html", session, me=me, accounts=request.app[keys.ACCOUNTS].all(),
                roles=list(Role), online=request.app[keys.STAFF_SESSIONS].staff_online(),
                default_max=request.app[keys.CONFIG].staff.max_chats,
                password_min=request.app[keys.ACCOUNTS].password_min)


@routes.post("/admin/staff/add", name="admin_staff_add")
async def staff_add(request: web.Request) -> web.StreamResponse:
    """Create an account with a role and an initial password."""
    session, me = admin(request)
    form = await read_form(request, session)
    name = form.get("name", "").strip().lower()
    try:
        role = Role(form.get("role", ""))
        # Hashing is heavy: one at a time, off the loop, at a fair turn like logins.
        await at_hash_turn(request, me.name, request.app[keys.ACCOUNTS].add, name, form.get("password", ""), role)
    except ValueError:
        return refused(request, session, "Choose one of the listed roles.", "/admin/staff")
    except AccountError as exc:
        return refused(request, session, str(exc), "/admin/staff")
    request.app[keys.AUDIT].record(me.name, "account_added", detail=f"{name} ({role.value})")
    raise see_other(f"/admin/staff/{name}")


@routes.get("/admin/staff/{name}", name="admin_account")
async def account_page(request: web.Request) -> web.Response:
    """One account: role, chat limit, disable, new password, reset 2FA, remove."""
    session, me = admin(request)
    account = target(request)
    return page(request, "staff/admin/account.html", session, me=me, account=account, roles=list(Role),
                default_max=request.app[keys.CONFIG].staff.max_chats,
                password_min=request.app[keys.ACCOUNTS].password_min)


Change = Callable[[AccountStore, Account, dict[str, str]], str]


# Changes after which the person must sign in again: whoever held their session may not.
# (The account's generation in accounts.json does the same for changes made with the CLI.)
SIGN_OUT_AFTER = frozenset({"account_disabled", "2fa_reset", "account_removed", "role_set"})


async def account_change(request: web.Request, action: str, change: Change) -> web.StreamResponse:
    """The shape of every account change: admin, CSRF, change in a worker thread, audit, redirect.

    ``change`` applies the form to the account and returns what the audit line adds to the name.
    """
    session, me = admin(request)
    form = await read_form(request, session)
    account = target(request)
    back = f"/admin/staff/{account.name}"
    try:
        detail = await asyncio.to_thread(change, request.app[keys.ACCOUNTS], account, form)
    except AccountError as exc:
        return refused(request, session, str(exc), back)
    request.app[keys.AUDIT].record(me.name, action, detail=f"{account.name}{detail}")
    if action in SIGN_OUT_AFTER:
        signed_out_elsewhere(request, session, account.name)
    raise see_other("/admin/staff" if action == "account_removed" else back)


def _set_role(store: AccountStore, account: Account, form: dict[str, str]) -> str:
    try:
        role = Role(form.get("role", ""))
    except ValueError:
        raise AccountError("choose one of the listed roles") from None
    store.set_role(account.name, role)
    return f": {role.value}"


def _disable(store: AccountStore, account: Account, form: dict[str, str]) -> str:
    store.set_disabled(account.name, disabled=True)
    return ""


def _enable(store: AccountStore, account: Account, form: dict[str, str]) -> str:
    store.set_disabled(account.name, disabled=False)
    return ""


def _set_max_chats(store: AccountStore, account: Account, form: dict[str, str]) -> str:
    text = form.get("max_chats", "").strip()
    if not text:
        store.set_max_chats(account.name, None)
        return ": default"
    if not text.isascii() or not text.isdigit():
        raise AccountError("the chat limit must be a whole number, or empty for the default")
    store.set_max_chats(account.name, int(text))
    return f": {int(text)}"


def _reset_2fa(store: AccountStore, account: Account, form: dict[str, str]) -> str:
    store.reset_totp(account.name)
    return ""


def _remove(store: AccountStore, account: Account, form: dict[str, str]) -> str:
    if form.get("confirm") != "1":
        raise AccountError("tick the box to confirm that the account should be removed")
    store.remove(account.name)
    return ""


@routes.post("/admin/staff/{name}/role", name="admin_account_role")
async def set_role(request: web.Request) -> web.StreamResponse:
    """Give the account another role (never taking away the last active admin)."""
    return await account_change(request, "role_set", _set_role)


@routes.post("/admin/staff/{name}/disable", name="admin_account_disable")
async def disable(request: web.Request) -> web.StreamResponse:
    """Disable the account: no login, and its session ends at its next request."""
    return await account_change(request, "account_disabled", _disable)


@routes.post("/admin/staff/{name}/enable", name="admin_account_enable")
async def enable(request: web.Request) -> web.StreamResponse:
    """Enable a disabled account again."""
    return await account_change(request, "account_enabled", _enable)


@routes.post("/admin/staff/{name}/max-chats", name="admin_account_max_chats")
async def set_max_chats(request: web.Request) -> web.StreamResponse:
    """The account's own limit of chats held at once; empty: the configured default."""
    return await account_change(request, "max_chats_set", _set_max_chats)


@routes.post("/admin/staff/{name}/reset-2fa", name="admin_account_reset_2fa")
async def reset_2fa(request: web.Request) -> web.StreamResponse:
    """Turn the account's 2FA off (a lost phone): the person sets it up again."""
    return await account_change(request, "2fa_reset", _reset_2fa)


@routes.post("/admin/staff/{name}/remove", name="admin_account_remove")
async def remove(request: web.Request) -> web.StreamResponse:
    """Delete the account (the form asks for a tick first)."""
    return await account_change(request, "account_removed", _remove)


@routes.post("/admin/staff/{name}/password", name="admin_account_password")
async def reset_password(request: web.Request) -> web.StreamResponse:
    """Set a new password for someone who lost theirs."""
    session, me = admin(request)
    form = await read_form(request, session)
    account = target(request)
    back = f"/admin/staff/{account.name}"
    password = form.get("password", "")
    if password != form.get("password_again", ""):
        return refused(request, session, "The two passwords differ.", back)
    try:
        await at_hash_turn(request, me.name, request.app[keys.ACCOUNTS].set_password, account.name, password)
    except AccountError as exc:
        return refused(request, session, str(exc), back)
    request.app[keys.AUDIT].record(me.name, "password_reset", detail=account.name)
    signed_out_elsewhere(request, session, account.name)
    raise see_other(back)


# Canned replies


def reply_fields(form: dict[str, str]) -> tuple[str, str, str]:
    """Language, title and text from a canned-reply form (CRLF from browsers made plain)."""
    return (form.get("lang", ""), form.get("title", ""), form.get("text", "").replace("\r\n", "\n"))


@routes.get("/admin/canned", name="admin_canned")
async def canned_list(request: web.Request) -> web.Response:
    """Every canned reply by language, and the form to add one."""
    session, _ = admin(request)
    replies = request.app[keys.CANNED].all()
    by_lang = {code: [r for r in replies if r.lang == code] for code in LANGUAGES}
    return page(request, "staff/admin/canned.html", session, languages=LANGUAGES, by_lang=by_lang)


@routes.post("/admin/canned/add", name="admin_canned_add")
async def canned_add(request: web.Request) -> web.StreamResponse:
    """Add a canned reply."""
    session, me = admin(request)
    form = await read_form(request, session)
    try:
        reply = await asyncio.to_thread(request.app[keys.CANNED].add, *reply_fields(form))
    except CannedError as exc:
        return refused(request, session, str(exc), "/admin/canned")
    request.app[keys.AUDIT].record(me.name, "canned_added", detail=f"{reply.id} ({reply.lang})")
    raise see_other("/admin/canned")


@routes.get("/admin/canned/{rid}", name="admin_canned_edit")
async def canned_edit(request: web.Request) -> web.Response:
    """The form to change or delete one reply."""
    session, _ = admin(request)
    reply = request.app[keys.CANNED].get(request.match_info["rid"])
    if reply is None:
        raise Refused(ErrorCode.NOT_FOUND)
    return page(request, "staff/admin/canned_edit.html", session, reply=reply, languages=LANGUAGES)


@routes.post("/admin/canned/{rid}/edit", name="admin_canned_update")
async def canned_update(request: web.Request) -> web.StreamResponse:
    """Change a reply's language, title or text."""
    session, me = admin(request)
    form = await read_form(request, session)
    rid = request.match_info["rid"]
    try:
        reply = await asyncio.to_thread(request.app[keys.CANNED].update, rid, *reply_fields(form))
    except CannedError as exc:
        return refused(request, session, str(exc), "/admin/canned")
    request.app[keys.AUDIT].record(me.name, "canned_changed", detail=f"{reply.id} ({reply.lang})")
    raise see_other("/admin/canned")


@routes.post("/admin/canned/{rid}/delete", name="admin_canned_delete")
async def canned_delete(request: web.Request) -> web.StreamResponse:
    """Delete a reply."""
    session, me = admin(request)
    await read_form(request, session)
    try:
        reply = await asyncio.to_thread(request.app[keys.CANNED].delete, request.match_info["rid"])
    except CannedError as exc:
        return refused(request, session, str(exc), "/admin/canned")
    request.app[keys.AUDIT].record(me.name, "canned_deleted", detail=f"{reply.id} ({reply.lang})")
    raise see_other("/admin/canned")


# The audit log


@routes.get("/admin/audit", name="admin_audit")
async def audit_log(request: web.Request) -> web.Response:
    """Staff actions, newest first, a page at a time."""
    session, _ = admin(request)
    entries = request.app[keys.AUDIT].entries()
    pages = max(1, -(-len(entries) // AUDIT_PAGE))
    try:
        number = min(max(1, int(request.query.get("page", "1"))), pages)
    except ValueError:
        number = 1
    shown = entries[(number - 1) * AUDIT_PAGE:number * AUDIT_PAGE]
    return page(request, "staff/admin/audit.html", session, entries=shown, number=number, pages=pages,
                total=len(entries), days=request.app[keys.AUDIT].retention_days)
