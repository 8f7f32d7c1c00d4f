"""Reading a POSTed form: CSRF-checked, text fields only, unreadable input refused."""

from __future__ import annotations

from aiohttp import web

from onionchat.errors import ErrorCode
from onionchat.sessions import Session
from onionchat.web.guard import Refused
from onionchat.web.proxy import arrived

FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


async def read_form(request: web.Request, session: Session | None) -> dict[str, str]:
    """The POSTed form after a CSRF check; only text fields are accepted."""
    if request.content_type not in FORM_TYPES:
        raise Refused(ErrorCode.BAD_REQUEST)
    try:
        form = await request.post()
    except (UnicodeDecodeError, ValueError):  # bytes that are no form: refused, nothing changed
        raise Refused(ErrorCode.BAD_REQUEST) from None
    except ConnectionError:  # cut off: the body did not arrive within [limits] request_seconds
        raise Refused(ErrorCode.TOO_SLOW) from None
    except RuntimeError:
        if request.transport is not None:
            raise  # a bug, not a closed connection
        # Closed before its body was read (cut off, or closed to make room at the ceiling):
        # aiohttp says "Connection closed." this way. Nobody is left to see the page.
        raise Refused(ErrorCode.TOO_SLOW) from None
    arrived(request)  # the whole request is in: its arrival deadline is over
    token = form.get("_csrf")
    if session is None or not isinstance(token, str) or not session.csrf_ok(token):
        raise Refused(ErrorCode.CSRF)
    fields: dict[str, str] = {}
    for name, value in form.items():
        if not isinstance(value, str):
            raise Refused(ErrorCode.BAD_REQUEST)  # file uploads have no place here
        fields.setdefault(name, value)
    return fields
