"""The friendly error pages, and ``guard``: the one middleware every request of both sites passes.

A refusal becomes its page in the person's language, and a bug becomes the generic page and
one log line that names the exception's type and the route, never the request's data. The
guard also charges the request budget, ends the arrival deadline and adds the security headers.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final

from aiohttp import web

from onionchat.circuits import LOCAL
from onionchat.errors import ChatError, ErrorCode, LimitReached
from onionchat.i18n import N_
from onionchat.sessions import Session
from onionchat.web import cookies, keys
from onionchat.web.headers import secure
from onionchat.web.pages import language
from onionchat.web.proxy import CircuitProtocol

log = logging.getLogger("onionchat.web")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class Refusal:
    """What a person sees when something is refused: a status, a title and a calm explanation."""

    status: int
    title: str
    text: str

    @property
    def message(self) -> tuple[str, str]:
        """Title and explanation, for a form shown again with the error above it."""
        return self.title, self.text


E = ErrorCode
ERRORS: Final[dict[ErrorCode, Refusal]] = {
    E.BAD_REQUEST: Refusal(400, N_("Something was not right"),
                           N_("The request could not be understood. Nothing was changed.")),
    E.CSRF: Refusal(403, N_("Please try again"),
                    N_("This form was too old or came from somewhere else, so it was not sent. "
                       "Nothing was changed. Go back, reload the page and try again.")),
    E.FORBIDDEN: Refusal(403, N_("Not allowed"), N_("You are not allowed to do this.")),
    E.NOT_FOUND: Refusal(404, N_("Page not found"), N_("There is nothing at this address.")),
    E.METHOD: Refusal(405, N_("Not allowed"), N_("This page cannot be used like that.")),
    E.TOO_LARGE: Refusal(413, N_("Too much text"),
                         N_("What you sent was too large, so it was not sent. Nothing was changed.")),
    E.SERVER: Refusal(500, N_("Something went wrong"),
                      N_("Something went wrong on our side. Please try again in a moment.")),
    E.BUSY: Refusal(503, N_("Very busy right now"),
                    N_("Too many people are using this service at the moment. Please try again in a "
                       "few minutes.")),
    E.QUEUE_FULL: Refusal(503, N_("All counsellors are busy"),
                          N_("The waiting line is full right now. Please try again in a few minutes.")),
    E.GONE: Refusal(404, N_("This chat has ended"),
                    N_("This conversation is no longer here. Its messages were deleted.")),
    E.RESUME_UNKNOWN: Refusal(404, N_("Chat not found"),
                              N_("No open chat has this return code. It may have ended, or a digit may be "
                                 "mistyped.")),
    E.RESUME_THROTTLED: Refusal(429, N_("Please wait a moment"),
                                N_("Too many tries. Wait a few minutes before trying the return code again.")),
    E.TOO_LONG: Refusal(413, N_("Message too long"), N_("Your message is too long. Please shorten it.")),
    E.TOO_FAST: Refusal(429, N_("Slow down a little"),
                        N_("You are sending messages very fast. Wait a moment, then send again.")),
    E.CONVERSATION_FULL: Refusal(413, N_("This chat is full"),
                                 N_("This conversation has reached its size limit. Please start a new chat.")),
    E.BLOCKED: Refusal(403, N_("Chat not available"), N_("The chat is not available right now.")),
    E.NOT_AVAILABLE: Refusal(409, N_("Not available"),
                             N_("That colleague is not available for new chats right now. Choose another.")),
    E.EMPTY: Refusal(400, N_("Empty message"), N_("Write something before pressing Send.")),
    E.ENDED: Refusal(409, N_("This chat has ended"), N_("This conversation has ended.")),
    E.TAKEN: Refusal(409, N_("Already taken"), N_("Another counsellor has already accepted this chat.")),
    E.COLLEAGUE_FULL: Refusal(409, N_("No room"),
                              N_("That colleague already holds as many chats as allowed. Choose another.")),
    E.MAX_CHATS: Refusal(409, N_("Too many chats"),
                         N_("You already hold as many chats as allowed. End one first.")),
    E.LOGIN_THROTTLED: Refusal(429, N_("Too many attempts"),
                               N_("Too many failed logins for this account. Wait a minute and try again.")),
    E.LOGIN_FAILED: Refusal(403, N_("Login failed"), N_("The username or password is wrong.")),
    E.CIRCUIT_BUDGET: Refusal(429, N_("Please wait a few minutes"),
                              N_("That was a lot in a short time. Please wait a few minutes, then try again.")),
    E.URGENT_ALREADY: Refusal(409, N_("You already asked for urgent help"),
                              N_("A counsellor will come to you first. If you are in danger right now, call the "
                                 "emergency number.")),
    E.TOO_SLOW: Refusal(408, N_("The connection was too slow"),
                        N_("What you sent took too long to arrive, so it was not sent. Please try again.")),
}
# aiohttp's own refusals (no route, wrong method, body too large) get our page for their status.
STATUS_CODES: Final = {400: E.BAD_REQUEST, 403: E.FORBIDDEN, 404: E.NOT_FOUND, 405: E.METHOD,
                       413: E.TOO_LARGE}


class Refused(web.HTTPException):
    """A request refused with one of the friendly pages in ERRORS."""

    def __init__(self, code: ErrorCode) -> None:
        self.status_code = ERRORS[code].status
        super().__init__()
        self.code = code


def error_page(request: web.Request, code: ErrorCode, session: Session | None = None) -> web.Response:
    """The friendly page for ``code`` in the person's language."""
    refusal = ERRORS[code]
    renderer = request.app[keys.RENDERER]
    if session is None:
        session = cookies.current(request)
    lang = language(request, session)
    t = renderer.translations(lang).gettext
    body = renderer.render("errors/error.html", lang, site=request.app[keys.SITE].site, status=refusal.status,
                           title=t(refusal.title), text=t(refusal.text), code=code.value, session=session)
    return web.Response(status=refusal.status, text=body, content_type="text/html", charset="utf-8")


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The one middleware of both sites: budget, friendly pages, security headers, arrival.

    - A visitor site's circuit pays one request from its budget before anything else is
      done for the request (a flood costs us the refusal only).
    - Every failure becomes a friendly page; a traceback never reaches a page or log. Input
      that cannot be parsed is refused where it is parsed (csrf.read_form); anything else that
      escapes a handler is a bug, logged by its type and route. Exception messages can quote
      what a visitor sent (a decode error shows the bytes), so never their text.
    - Every answer, redirects and errors included, carries the security headers (a frame's
      answer has them from its prebuilt block already).
    - The request's arrival deadline (web/proxy.py) ends once it has arrived: at once without
      a body, else when the handler is done with it.

    One middleware rather than several: each one is a layer of calls on every poll.
    """
    protocol = request.protocol
    gate = protocol if type(protocol) is CircuitProtocol else None
    if gate is not None and not request.body_exists:
        gate.arrived()
    try:
        budgets = request.app[keys.LISTENER].circuits  # the visitor site's; the staff site has none
        if budgets is not None and not budgets.charge_request(gate.circuit if gate is not None else LOCAL):
            raise LimitReached(E.CIRCUIT_BUDGET)
        response = await handler(request)
    except (Refused, ChatError) as exc:
        response = error_page(request, exc.code)
    except web.HTTPException as exc:
        if exc.status >= 400:
            response = error_page(request, STATUS_CODES.get(exc.status, E.BAD_REQUEST))
        else:
            secure(exc)  # a redirect: aiohttp sends the exception itself
            raise
    except Exception as exc:  # noqa: BLE001 - the server must never die of input
        route = request.match_info.route.name or "unnamed route"
        log.error("internal error (%s) in %s", type(exc).__name__, route)
        response = error_page(request, E.SERVER)
    finally:
        if gate is not None:
            gate.arrived()
    secure(response)
    return response
