"""Staff sign-in (password, then a TOTP code), sign-out, and each person's own account and 2FA pages."""

from __future__ import annotations

import asyncio

from aiohttp import web

from onionchat import totp
from onionchat.accounts import Account, Role
from onionchat.errors import AccountError, ErrorCode
from onionchat.i18n import N_
from onionchat.sessions import Session
from onionchat.throttle import Attempt, Verdict
from onionchat.totp import Stage
from onionchat.web import circuit, cookies, keys
from onionchat.web.csrf import read_form
from onionchat.web.guard import ERRORS, Refused
from onionchat.web.pages import see_other

from .access import at_hash_turn, max_chats, page, present, signed_in, signed_out_elsewhere
from .chats import hand_over
from .workspace import colleagues

routes = web.RouteTableDef()

CODE_FAILED = (N_("Wrong code"), N_("The code is wrong or was already used. Wait for the next code "
                                     "from your app and try again."))
SETUP_EXPIRED = (N_("Please scan the new code"), N_("The setup took too long, so a new secret was made. "
                                                    "Scan the new QR code, then enter a code."))
PASSWORD_WRONG = (N_("Password not changed"), N_("Your current password is wrong."))
ENROL_PASSWORD_WRONG = (N_("Two-factor login not turned on"), N_("Your password is wrong."))
THROTTLED = ERRORS[ErrorCode.LOGIN_THROTTLED].message
CODE_FIRST = (N_("Too many failed logins for this name"),
              N_("Many failed logins for this name came from elsewhere. If you use two-factor login, enter "
                 "the code from your app together with your password. Otherwise wait a while and try again."))


def _finish_login(request: web.Request, session: Session, account: Account) -> web.HTTPSeeOther:
    """Every step is done: a fresh session id, signed in, this circuit's failures forgotten, audited."""
    request.app[keys.PENDING].drop(session.id)
    session = request.app[keys.SESSIONS].regenerate(session)
    session.staff = account.name
    session.staff_generation = account.generation
    # Counsellors take chats from the start; supervisors and admins only once they choose to.
    session.available = account.role is Role.COUNSELLOR
    present(request, session)  # the workspace opens next; from then on its frames keep this up
    request.app[keys.LOGIN_THROTTLE].signed_in(account.name, circuit=circuit.circuit_of(request))
    request.app[keys.AUDIT].record(account.name, "login", detail="2FA" if account.has_totp else "")
    response = see_other("/")
    cookies.set_cookie(request, response, session)
    return response


def _to_step(request: web.Request, session: Session, account: Account, stage: Stage,
             location: str) -> web.HTTPSeeOther:
    """The password was right; one more step before the session is signed in."""
    session = request.app[keys.SESSIONS].regenerate(session)  # a planted id is worthless from here on
    secret = totp.new_secret() if stage is Stage.ENROL else ""
    request.app[keys.PENDING].put(session.id, account.name, stage, secret, generation=account.generation)
    response = see_other(location)
    cookies.set_cookie(request, response, session)
    return response


async def password_matches(request: web.Request, name: str, password: str) -> Account | None:
    """The account if ``password`` is right for ``name``; argon2id in a worker thread, at a fair turn.

    Turns go round robin between circuits, then names (onionchat.turns): a flood of attempts
    for one account or from one circuit waits behind everyone else's, not in front of them.
    """
    return await at_hash_turn(request, name, request.app[keys.ACCOUNTS].verify, name, password)


def _login_page(request: web.Request, session: Session, status: int = 200,
                error: tuple[str, str] | None = None, *, ask_code: bool = False) -> web.Response:
    return page(request, "staff/login.html", session, status=status, error=error, ask_code=ask_code)


@routes.get("/login", name="login")
async def login_form(request: web.Request) -> web.Response:
    """Username, Password, Log in."""
    session, new = cookies.ensure(request)
    response = _login_page(request, session)
    if new:
        cookies.set_cookie(request, response, session)
    return response


@routes.post("/login", name="login_post")
async def login(request: web.Request) -> web.StreamResponse:
    """Count the attempt, check the password at a fair turn; then the code, enrolment, or straight in.

    The attempt is counted as a failure before the password is checked (and taken back if it was
    right), in one step with the budget check: attempts beyond the budget never reach argon2,
    however many arrive at once. Known and unknown names take the same path, at the same cost.
    """
    session = cookies.current(request)
    form = await read_form(request, session)
    assert session is not None
    name = form.get("username", "").strip().lower()[:64]
    password = form.get("password", "")
    throttle = request.app[keys.LOGIN_THROTTLE]
    attempt = throttle.attempt(name, circuit=circuit.circuit_of(request))
    if attempt.verdict is Verdict.THROTTLED:
        return _login_page(request, session, 429, THROTTLED)
    if attempt.verdict is Verdict.CODE_FIRST:
        return await _login_code_first(request, session, attempt, password, form.get("code", ""))
    account = await password_matches(request, name, password)
    if account is None:
        _audit_failure(request, name, "password")
        return _login_page(request, session, 403, ERRORS[ErrorCode.LOGIN_FAILED].message)
    throttle.succeeded(attempt)
    # With 2FA this circuit's failures are cleared only after the code: knowing the password
    # must not buy fresh guesses at the code.
    if account.has_totp:
        raise _to_step(request, session, account, Stage.CODE, "/login/code")
    if request.app[keys.CONFIG].staff.require_totp:
        raise _to_step(request, session, account, Stage.ENROL, "/login/enrol")
    raise _finish_login(request, session, account)


def _audit_failure(request: web.Request, name: str, what: str) -> None:
    # The name only if such an account exists: a mistyped password in the name field stays out.
    known = request.app[keys.ACCOUNTS].get(name) is not None
    request.app[keys.AUDIT].record(name if known else "", "login_failed", detail=what if known else "unknown name")


async def _login_code_first(request: web.Request, session: Session, attempt: Attempt, password: str,
                            code: str) -> web.StreamResponse:
    """A name under attack from many circuits opens only to a right 2FA code with the password.

    The code is checked first, in microseconds; only a right one lets the password reach argon2.
    Guessers without the code cost nothing and lock nobody with 2FA out. Every name, known or
    not, with 2FA or without, gets the same answers here.
    """
    if not code:
        return _login_page(request, session, 429, CODE_FIRST, ask_code=True)
    name = attempt.name
    account = request.app[keys.ACCOUNTS].get(name)
    step = totp.matching_step(account.totp_secret if account is not None else "", code)
    if step is None:
        _audit_failure(request, name, "code (many failed logins)")
        return _login_page(request, session, 403, CODE_FAILED, ask_code=True)
    account = await password_matches(request, name, password)
    if account is None or not await asyncio.to_thread(request.app[keys.ACCOUNTS].use_totp_step, name, step):
        _audit_failure(request, name, "password (many failed logins)")
        return _login_page(request, session, 403, ERRORS[ErrorCode.LOGIN_FAILED].message, ask_code=True)
    request.app[keys.LOGIN_THROTTLE].succeeded(attempt)
    raise _finish_login(request, session, account)


def _pending(request: web.Request, stage: Stage) -> tuple[Session, totp.Pending, Account]:
    """The browser's half-finished login at ``stage``; otherwise back to the password."""
    session = cookies.current(request)
    pending = request.app[keys.PENDING].get(session.id, stage) if session is not None else None
    if session is None or pending is None:
        raise see_other("/login")
    account = request.app[keys.ACCOUNTS].signed_in(pending.name, pending.generation)
    if account is None or (stage is Stage.CODE) != account.has_totp:
        request.app[keys.PENDING].drop(session.id)
        raise see_other("/login")
    return session, pending, account


class _Throttled(Exception):
    """The code was not checked: too many failed attempts."""


async def _code_accepted(request: web.Request, account: Account, secret: str, code: str) -> int | None:
    """The time-step of a right, unused code for ``secret`` (marked used if 2FA is on); else None.

    A code counts against the same throttle as a password; beyond it (or when the name is
    under attack from many circuits: whoever is here knows the password) nothing is checked.
    """
    throttle = request.app[keys.LOGIN_THROTTLE]
    attempt = throttle.attempt(account.name, circuit=circuit.circuit_of(request))
    if attempt.verdict is not Verdict.GO:
        raise _Throttled
    step = totp.matching_step(secret, code)
    # Written to accounts.json: a restart must not make a used code valid again.
    if (step is not None and account.has_totp
            and not await asyncio.to_thread(request.app[keys.ACCOUNTS].use_totp_step, account.name, step)):
        step = None
    if step is None:
        request.app[keys.AUDIT].record(account.name, "login_failed", detail="code")
    else:
        throttle.succeeded(attempt)
    return step


@routes.get("/login/code", name="login_code")
async def code_form(request: web.Request) -> web.Response:
    """The second step: the code from the authenticator app."""
    session, _, _ = _pending(request, Stage.CODE)
    return page(request, "staff/login_code.html", session, error=None)


@routes.post("/login/code", name="login_code_post")
async def code(request: web.Request) -> web.StreamResponse:
    """Check the code; a used one (or an earlier one) is refused."""
    session = cookies.current(request)
    form = await read_form(request, session)
    session, _, account = _pending(request, Stage.CODE)
    try:
        step = await _code_accepted(request, account, account.totp_secret, form.get("code", ""))
    except _Throttled:
        return page(request, "staff/login_code.html", session, status=429,
                    error=THROTTLED)
    if step is None:
        return page(request, "staff/login_code.html", session, status=403, error=CODE_FAILED)
    raise _finish_login(request, session, account)


def _setup_context(secret: str, name: str) -> dict[str, object]:
    return {"qr": totp.qr_png_data_uri(totp.provisioning_uri(secret, name)), "secret": totp.grouped(secret)}


def _enrol_page(request: web.Request, session: Session, pending: totp.Pending, account: Account,
                status: int = 200, error: tuple[str, str] | None = None) -> web.Response:
    return page(request, "staff/login_enrol.html", session, status, error=error,
                **_setup_context(pending.secret, account.name))


@routes.get("/login/enrol", name="login_enrol")
async def enrol_form(request: web.Request) -> web.Response:
    """2FA is required and not set up yet: set it up before anything else."""
    session, pending, account = _pending(request, Stage.ENROL)
    return _enrol_page(request, session, pending, account)


@routes.post("/login/enrol", name="login_enrol_post")
async def enrol(request: web.Request) -> web.StreamResponse:
    """Confirm the new secret with a code, then sign in."""
    session = cookies.current(request)
    form = await read_form(request, session)
    session, pending, account = _pending(request, Stage.ENROL)
    try:
        step = await _code_accepted(request, account, pending.secret, form.get("code", ""))
    except _Throttled:
        return _enrol_page(request, session, pending, account, 429, THROTTLED)
    if step is None:
        return _enrol_page(request, session, pending, account, 403, CODE_FAILED)
    # The confirming code's step is stored as used: it cannot sign anyone in a second time.
    account = await asyncio.to_thread(request.app[keys.ACCOUNTS].enable_totp, account.name, pending.secret, step)
    request.app[keys.AUDIT].record(account.name, "2fa_enrolled")
    raise _finish_login(request, session, account)


@routes.post("/logout", name="logout")
async def logout(request: web.Request) -> web.StreamResponse:
    """End the staff session; open chats first go back to the line or to a colleague.

    With chats still held and no choice made, the answer asks what should happen to them:
    a visitor must never be left talking to someone who has gone.
    """
    session = cookies.current(request)
    form = await read_form(request, session)
    if session is not None and session.staff:
        _, account = signed_in(request)
        held = request.app[keys.CHAT].held_chats(account.name)
        choice = form.get("chats", "")
        if held and choice not in ("queue", "transfer"):
            return page(request, "staff/logout.html", session, chats=held, colleagues=colleagues(request, account))
        if held and choice == "transfer":
            # All or nothing: a colleague who can take only some would leave the rest with nobody.
            colleague = request.app[keys.ACCOUNTS].get(form.get("to", ""))
            if colleague is None:
                raise Refused(ErrorCode.NOT_AVAILABLE)
            if request.app[keys.CHAT].held_by(colleague.name) + len(held) > max_chats(request, colleague):
                raise Refused(ErrorCode.COLLEAGUE_FULL)
        for conv in held:
            if choice == "queue":
                request.app[keys.CHAT].requeue(conv.id, account.name)
            else:
                hand_over(request, account, conv, form.get("to", ""), form.get("reason", ""))
    if session is not None:
        if session.staff:
            request.app[keys.AUDIT].record(session.staff, "logout")
        request.app[keys.PENDING].drop(session.id)
        request.app[keys.SESSIONS].drop(session)
    response = see_other("/login")
    cookies.clear_cookie(request, response)
    raise response


def _account_page(request: web.Request, session: Session, account: Account, status: int = 200,
                  error: tuple[str, str] | None = None, message: str = "", reason: str = "") -> web.Response:
    # ``reason`` (an AccountError's text) is shown escaped, never passed through gettext, which
    # would mark it safe HTML.
    return page(request, "staff/account.html", session, status=status, account=account, error=error,
                reason=reason, message=message, require_totp=request.app[keys.CONFIG].staff.require_totp,
                password_min=request.app[keys.ACCOUNTS].password_min)


@routes.get("/account", name="account")
async def account_page(request: web.Request) -> web.Response:
    """One's own account: role, 2FA state, a new password."""
    session, account = signed_in(request)
    return _account_page(request, session, account, message=request.query.get("done", "")[:20])


async def own_password_refused(request: web.Request, account: Account, password: str) -> int | None:
    """Check a signed-in person's current password; None when right, else the status to answer.

    Counted like a login from this circuit (429 over budget, 403 wrong), but without the
    per-account ceiling over all circuits: the session already proved a whole login, so
    guessing from elsewhere does not stop it here.
    """
    throttle = request.app[keys.LOGIN_THROTTLE]
    attempt = throttle.attempt(account.name, circuit=circuit.circuit_of(request), ceiling=False)
    if attempt.verdict is Verdict.THROTTLED:
        return 429
    if await password_matches(request, account.name, password) is None:
        return 403
    throttle.succeeded(attempt)
    return None


@routes.post("/account/password", name="account_password")
async def change_password(request: web.Request) -> web.StreamResponse:
    """A new password, after the current one (a borrowed session alone cannot change it).

    Every other session of the account is signed out: whoever else held one must log in again.
    """
    session, account = signed_in(request)
    form = await read_form(request, session)
    accounts = request.app[keys.ACCOUNTS]
    new, again = form.get("new_password", ""), form.get("new_password_again", "")
    refused = await own_password_refused(request, account, form.get("current_password", ""))
    if refused is not None:
        return _account_page(request, session, account, refused, THROTTLED if refused == 429 else PASSWORD_WRONG)
    if new != again:
        return _account_page(request, session, account, 400,
                             (N_("Password not changed"), N_("The two new passwords differ.")))
    try:
        await at_hash_turn(request, account.name, accounts.set_password, account.name, new)
    except AccountError as exc:
        return _account_page(request, session, account, 400, (N_("Password not changed"), ""), reason=str(exc))
    signed_out_elsewhere(request, session, account.name)  # this session stays; every other one ends
    request.app[keys.AUDIT].record(account.name, "password_changed", detail=account.name)
    raise see_other("/account?done=password")


def _two_factor_page(request: web.Request, session: Session, account: Account, status: int = 200,
                     error: tuple[str, str] | None = None) -> web.Response:
    context: dict[str, object] = {}
    if not account.has_totp:
        steps = request.app[keys.PENDING]
        pending = steps.get(session.id, Stage.ACCOUNT)
        if pending is None or pending.name != account.name:
            pending = steps.put(session.id, account.name, Stage.ACCOUNT, totp.new_secret())
        context = _setup_context(pending.secret, account.name)
    return page(request, "staff/account_2fa.html", session, status, account=account, error=error, **context)


@routes.get("/account/2fa", name="account_2fa")
async def two_factor(request: web.Request) -> web.Response:
    """Set up two-factor login: a fresh secret, held in memory until a code confirms it."""
    session, account = signed_in(request)
    return _two_factor_page(request, session, account)


@routes.post("/account/2fa", name="account_2fa_post")
async def two_factor_confirm(request: web.Request) -> web.StreamResponse:
    """Confirm the new secret with a code from the app."""
    session, account = signed_in(request)
    form = await read_form(request, session)
    if account.has_totp:
        raise see_other("/account/2fa")
    pending = request.app[keys.PENDING].get(session.id, Stage.ACCOUNT)
    if pending is None or pending.name != account.name:
        return _two_factor_page(request, session, account, 409, SETUP_EXPIRED)
    # The password too: a borrowed session alone must not tie the account to someone else's
    # phone (the owner would then need an admin to get back in).
    refused = await own_password_refused(request, account, form.get("current_password", ""))
    if refused is not None:
        return _two_factor_page(request, session, account, refused,
                                THROTTLED if refused == 429 else ENROL_PASSWORD_WRONG)
    step = totp.matching_step(pending.secret, form.get("code", ""))
    if step is None:
        return _two_factor_page(request, session, account, 403, CODE_FAILED)
    await asyncio.to_thread(request.app[keys.ACCOUNTS].enable_totp, account.name, pending.secret, step)
    request.app[keys.PENDING].drop(session.id)
    request.app[keys.AUDIT].record(account.name, "2fa_enrolled")
    raise see_other("/account/2fa")
