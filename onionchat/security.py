"""Security headers, friendly error pages, body limits, CSRF-checked forms, and the privacy guard.

Every response of both sites passes through here. The defaults below are the security
policy of onionchat; each is set here, once, with the reason beside it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Final

from aiohttp import web

from onionchat import keys, websession
from onionchat.errors import ChatError
from onionchat.pages import language
from onionchat.sessions import Session

log = logging.getLogger("onionchat.web")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def N_(message: str) -> str:  # noqa: N802 - the conventional name Babel extracts
    """Mark a string for translation without translating it yet."""
    return message


# The content security policy allows no script source at all: pages work at Tor Browser's
# Safest level because they never had any. Frames are our own (the chat frame set), so
# 'self' rather than 'none' for frame-src and frame-ancestors; forms post only to us.
CSP: Final = ("default-src 'none'; style-src 'self'; img-src 'self' data:; frame-src 'self'; "
              "frame-ancestors 'self'; form-action 'self'; base-uri 'none'")
SECURITY_HEADERS: Final = {
    "Content-Security-Policy": CSP,
    "Referrer-Policy": "no-referrer",  # a visitor's onion path never leaks to the quick-exit site
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "SAMEORIGIN",  # for browsers that ignore frame-ancestors
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": ("camera=(), microphone=(), geolocation=(), payment=(), usb=(), "
                           "interest-cohort=(), fullscreen=(), display-capture=()"),
    "Server": "onionchat",  # no version: nothing to fingerprint
}
NO_STORE: Final = "no-store"  # dynamic pages never touch a cache (shared computer, seized disk)

# code -> (status, title, explanation): what a person sees when something is refused.
ERRORS: Final[dict[str, tuple[int, str, str]]] = {
    "bad_request": (400, N_("Something was not right"),
                    N_("The request could not be understood. Nothing was changed.")),
    "csrf": (403, N_("Please try again"),
             N_("This form was too old or came from somewhere else, so it was not sent. "
                "Nothing was changed. Go back, reload the page and try again.")),
    "forbidden": (403, N_("Not allowed"), N_("You are not allowed to do this.")),
    "not_found": (404, N_("Page not found"), N_("There is nothing at this address.")),
    "method": (405, N_("Not allowed"), N_("This page cannot be used like that.")),
    "too_large": (413, N_("Too much text"),
                  N_("What you sent was too large, so it was not sent. Nothing was changed.")),
    "server": (500, N_("Something went wrong"),
               N_("Something went wrong on our side. Please try again in a moment.")),
    "busy": (503, N_("Very busy right now"),
             N_("Too many people are using this service at the moment. Please try again in a "
                "few minutes.")),
    "queue_full": (503, N_("All counsellors are busy"),
                   N_("The waiting line is full right now. Please try again in a few minutes.")),
    "gone": (404, N_("This chat has ended"),
             N_("This conversation is no longer here. Its messages were deleted.")),
    "resume_unknown": (404, N_("Chat not found"),
                       N_("No open chat has this passphrase. It may have ended, or a word may be "
                          "mistyped.")),
    "resume_throttled": (429, N_("Please wait a moment"),
                         N_("Too many tries. Wait a few minutes before trying the passphrase again.")),
    "too_long": (413, N_("Message too long"), N_("Your message is too long. Please shorten it.")),
    "too_fast": (429, N_("Slow down a little"),
                 N_("You are sending messages very fast. Wait a moment, then send again.")),
    "conversation_full": (413, N_("This chat is full"),
                          N_("This conversation has reached its size limit. Please start a new chat.")),
    "blocked": (403, N_("Chat not available"), N_("The chat is not available right now.")),
    "not_available": (409, N_("Not available"),
                      N_("That colleague is not available for new chats right now. Choose another.")),
    "empty": (400, N_("Empty message"), N_("Write something before pressing Send.")),
    "ended": (409, N_("This chat has ended"), N_("This conversation has ended.")),
    "taken": (409, N_("Already taken"), N_("Another counsellor has already accepted this chat.")),
    "max_chats": (409, N_("Too many chats"),
                  N_("You already hold as many chats as allowed. End one first.")),
    "login_throttled": (429, N_("Too many attempts"),
                        N_("Too many failed logins for this account. Wait a minute and try again.")),
    "login_failed": (403, N_("Login failed"), N_("The username or password is wrong.")),
    "expired": (403, N_("Please log in"), N_("Your session has ended. Please log in again.")),
}
STATUS_CODES: Final = {400: "bad_request", 403: "forbidden", 404: "not_found", 405: "method",
                       413: "too_large"}


class Refused(web.HTTPException):
    """A request refused with one of the friendly pages in ERRORS."""

    def __init__(self, code: str) -> None:
        status = ERRORS.get(code, ERRORS["bad_request"])[0]
        self.status_code = status
        super().__init__()
        self.code = code


def error_page(request: web.Request, code: str, session: Session | None = None) -> web.Response:
    """The friendly page for ``code`` in the person's language."""
    status, title, text = ERRORS.get(code, ERRORS["server"])
    renderer = request.app[keys.RENDERER]
    if session is None:
        session = websession.current(request)
    lang = language(request, session)
    t = renderer.translations(lang).gettext
    body = renderer.render("errors/error.html", lang, site=request.app[keys.SITE], status=status,
                           title=t(title), text=t(text), code=code, session=session)
    return web.Response(status=status, text=body, content_type="text/html", charset="utf-8")


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn every failure into a friendly page; never let a traceback reach a page or log.

    Exception messages can quote what a visitor sent (a decode error shows the bytes), so
    only the exception's type and the route's name are logged, never its text.
    """
    try:
        return await handler(request)
    except Refused as exc:
        return error_page(request, exc.code)
    except ChatError as exc:
        return error_page(request, exc.code)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return error_page(request, STATUS_CODES.get(exc.status, "bad_request"))
    except (UnicodeDecodeError, ValueError):
        return error_page(request, "bad_request")
    except Exception as exc:  # noqa: BLE001 - the server must never die of input
        route = request.match_info.route.name or "unnamed route"
        log.error("internal error (%s) in %s", type(exc).__name__, route)
        return error_page(request, "server")


async def add_headers(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: the security headers on every response, errors included."""
    response.headers.update(SECURITY_HEADERS)
    response.headers.setdefault("Cache-Control", NO_STORE)


async def read_form(request: web.Request, session: Session | None) -> dict[str, str]:
    """The POSTed form after a CSRF check; only text fields are accepted."""
    if request.content_type not in ("application/x-www-form-urlencoded", "multipart/form-data"):
        raise Refused("bad_request")
    form = await request.post()
    token = form.get("_csrf")
    if session is None or not isinstance(token, str) or not session.csrf_ok(token):
        raise Refused("csrf")
    fields: dict[str, str] = {}
    for name, value in form.items():
        if not isinstance(value, str):
            raise Refused("bad_request")  # file uploads have no place here
        fields.setdefault(name, value)
    return fields
