"""Session cookies: memory-only ids in HttpOnly, SameSite=Strict cookies, never in a URL."""

from __future__ import annotations

from aiohttp import hdrs, web

from onionchat.circuits import Budget
from onionchat.sessions import Session
from onionchat.web import keys
from onionchat.web.circuit import charge, circuit_of
from onionchat.web.poll import by_person


def session_id(request: web.Request) -> str | None:
    """The value of this site's cookie, read straight from the Cookie header.

    Every poll passes here: aiohttp's request.cookies builds a Morsel per cookie (12-14 µs a
    request, measured in bench/). Our ids are token_urlsafe, so no unquoting is ever needed;
    anything else simply matches no session.
    """
    header = request.headers.get(hdrs.COOKIE)
    if not header:
        return None
    prefix = request.app[keys.SITE].cookie_prefix
    if header.startswith(prefix) and ";" not in header:  # our cookie alone: what browsers send us
        return header[len(prefix):]
    for part in header.split(";"):
        part = part.strip()
        if part.startswith(prefix):
            return part[len(prefix):]
    return None


def current(request: web.Request) -> Session | None:
    """The request's live session, or None; only the person's own requests count as activity."""
    return request.app[keys.SESSIONS].get(session_id(request), acted=by_person(request))


def ensure(request: web.Request) -> tuple[Session, bool]:
    """The request's session, creating one if needed; True when it is new.

    A new visitor session is charged to the request's circuit (circuits.sessions): a flood
    of first visits is refused before it costs a session.
    """
    session = current(request)
    if session is not None:
        return session, False
    charge(request, Budget.SESSION)
    return request.app[keys.SESSIONS].create(circuit_of(request)), True


def set_cookie(request: web.Request, response: web.StreamResponse, session: Session) -> None:
    """Attach the session cookie: no Expires, so it dies with the (private) browser window."""
    response.set_cookie(request.app[keys.SITE].cookie, session.id, httponly=True, samesite="Strict", path="/")


def clear_cookie(request: web.Request, response: web.StreamResponse) -> None:
    """Remove the session cookie from the browser."""
    response.del_cookie(request.app[keys.SITE].cookie, path="/")
