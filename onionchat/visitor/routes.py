"""Routes of the visitor site: landing, waiting, chatting, leaving, quick exit and resume."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import Final

from aiohttp import web

from onionchat import i18n
from onionchat.chat import Author, Conversation, EndReason, State, VisitorView
from onionchat.circuits import Budget
from onionchat.errors import ChatError, ErrorCode, NotFound
from onionchat.pagecache import Audience, PageKey
from onionchat.sessions import Session
from onionchat.web import cookies, keys
from onionchat.web.circuit import charge, circuit_of
from onionchat.web.csrf import read_form
from onionchat.web.guard import ERRORS, Refused, error_page
from onionchat.web.pages import language, page, see_other
from onionchat.web.poll import next_check, serve_frame, wait_any

routes = web.RouteTableDef()
PASSPHRASE_AGAIN_SECONDS = 60.0


def held_conversation(request: web.Request, session: Session | None) -> Conversation | None:
    """The conversation this browser started or resumed, whether or not it has moved on since."""
    if session is None or not session.conversation:
        return None
    return request.app[keys.CHAT].find(session.conversation)


def moved(session: Session | None, conv: Conversation | None) -> bool:
    """True when the chat was resumed in another browser after this one got it."""
    return session is not None and conv is not None and session.attached != conv.attached


def conversation_of(request: web.Request, session: Session | None) -> Conversation | None:
    """The conversation this browser may read and act on (only through its own session, never by id).

    None once the chat was resumed in another browser: only the newest browser holds it.
    Asking for it is a sign of life: a waiting visitor whose pages keep asking keeps their
    place in line (see ChatStore.sweep).
    """
    conv = held_conversation(request, session)
    if conv is None or moved(session, conv):
        return None
    if conv.state is not State.ENDED:
        request.app[keys.CHAT].visitor_here(conv)
    return conv


def moved_page(request: web.Request, session: Session | None, *, frame: bool = False) -> web.Response:
    """The chat continues in another browser: nothing of it is shown here any more."""
    return page(request, "visitor/moved.html", session, frame=frame)


def wait_minutes(request: web.Request, position: int) -> int:
    """Estimated wait: chats ahead times minutes per chat, shared by the staff available."""
    config = request.app[keys.CONFIG]
    staff = max(1, len(request.app[keys.STAFF_SESSIONS].staff_available()))
    return -(-position * config.visitor.minutes_per_visitor // staff)


def availability(request: web.Request) -> str:
    """Why a new visitor cannot join the line right now ("closed", "nobody", "full"), or ""."""
    config = request.app[keys.CONFIG]
    if not request.app[keys.HOURS].is_open():
        return "closed"
    if not config.hours.open_without_staff and not request.app[keys.STAFF_SESSIONS].staff_available():
        return "nobody"
    if request.app[keys.CHAT].line_full(circuit_of(request)):
        return "full"
    return ""


def come_back_later(request: web.Request, session: Session | None, reason: str) -> web.Response:
    """The calm page: why there is no chat now, when to come back, and what else to do."""
    opening = request.app[keys.HOURS].next_opening() if reason == "closed" else None
    return page(request, "visitor/closed.html", session, status=503 if reason == "full" else 200,
                reason=reason, opening=opening)


def view(conv: Conversation | None) -> VisitorView | None:
    """The only form in which a conversation reaches a visitor template."""
    return conv.visitor_view() if conv is not None else None


@routes.get("/", name="landing")
async def landing(request: web.Request) -> web.Response:
    """What this is, why it is anonymous, how to stay safe, Start chat and Resume chat."""
    session, new = cookies.ensure(request)
    conv = conversation_of(request, session)
    active = conv is not None and conv.state is not State.ENDED
    reason = "" if active else availability(request)
    opening = request.app[keys.HOURS].next_opening() if reason == "closed" else None
    response = page(request, "visitor/landing.html", session, active=active, reason=reason, opening=opening)
    if new:
        cookies.set_cookie(request, response, session)
    return response


@routes.post("/start", name="start")
async def start(request: web.Request) -> web.StreamResponse:
    """Join the queue with an optional nickname."""
    session = cookies.current(request)
    form = await read_form(request, session)
    assert session is not None  # read_form refuses requests without a session
    conv = conversation_of(request, session)
    if conv is None or conv.state is State.ENDED:
        store = request.app[keys.CHAT]
        if store.session_blocked(session.id):
            raise Refused(ErrorCode.BLOCKED)
        reason = availability(request)
        if reason:
            return come_back_later(request, session, reason)
        # A new id for the chat: an id someone planted in this browser never holds a chat.
        session = request.app[keys.SESSIONS].regenerate(session)
        try:
            conv, passphrase = store.start(form.get("nickname", ""), session_id=session.id,
                                           lang=language(request, session), circuit=circuit_of(request),
                                           sessions=len(request.app[keys.SESSIONS]))
        except ChatError as exc:
            # The browser must learn its new id even now, or its next form would be refused.
            refused = (come_back_later(request, session, "full") if exc.code is ErrorCode.QUEUE_FULL
                       else error_page(request, exc.code, session))
            cookies.set_cookie(request, refused, session)
            return refused
        session.conversation = conv.id
        session.attached = conv.attached
        session.passphrase = passphrase
        response = see_other("/chat")
        cookies.set_cookie(request, response, session)
        raise response
    raise see_other("/chat")


@routes.post("/resume", name="resume")
async def resume(request: web.Request) -> web.StreamResponse:
    """Return to a conversation still in memory with its passphrase."""
    session = cookies.current(request)
    form = await read_form(request, session)
    assert session is not None
    store = request.app[keys.CHAT]
    charge(request, Budget.RESUME)  # per circuit; per session below; nothing global anyone could spend
    conv, passphrase = store.resume(form.get("passphrase", ""), session.resume_throttle)
    session = request.app[keys.SESSIONS].regenerate(session)  # as at the start: no planted id
    store.rebind(conv, session.id)
    session.conversation = conv.id
    session.attached = conv.attached
    # A new passphrase at each resume, shown once on the chat page: the one just used is spent.
    session.passphrase, session.passphrase_again, session.passphrase_until = passphrase, "", 0.0
    conv.lang = language(request, session)  # this browser's choice: the counsellor sees it
    request.app[keys.CHAT].notify_board()
    response = see_other("/chat")
    cookies.set_cookie(request, response, session)
    raise response


@routes.get("/chat", name="chat")
async def chat(request: web.Request) -> web.StreamResponse:
    """The chat frame set: messages (self-updating), compose (never reloads), controls."""
    session = cookies.current(request)
    conv = held_conversation(request, session)
    if moved(session, conv):
        return moved_page(request, session)
    if session is None or conv is None:
        raise see_other("/")
    passphrase, session.passphrase = session.passphrase, ""  # shown once, then forgotten
    if passphrase and not session.passphrase_until:
        # ...except once more if the visitor switches language within a minute of seeing it.
        session.passphrase_again, session.passphrase_until = passphrase, time.monotonic() + PASSPHRASE_AGAIN_SECONDS
    return page(request, "visitor/chat.html", session, passphrase=passphrase, renewed=conv.attached > 1,
                passphrase_native=i18n.native_digits(passphrase, language(request, session)))


@routes.post("/chat/urgent", name="urgent")
async def urgent(request: web.Request) -> web.StreamResponse:
    """'I am in danger now': jump the queue, alert staff, and show what to do right away.

    The button's form opens its answer in the messages frame, where the visitor is looking:
    the reply box keeps what they were typing, Quick exit stays at the top. A chat that has
    ended (or was never there) still gets the advice and the number.
    """
    session = cookies.current(request)
    await read_form(request, session)
    conv = conversation_of(request, session)
    if conv is not None and conv.state is not State.ENDED:
        request.app[keys.CHAT].mark_urgent(conv.id)
    raise see_other("/danger?frame=1")


@routes.get("/danger", name="danger")
async def danger(request: web.Request) -> web.Response:
    """What to do in danger, the emergency number first; a way back to the chat.

    ``frame=1``: shown inside the chat's messages frame (no header: the page around it has Quick exit).
    """
    session = cookies.current(request)
    framed = request.query.get("frame") == "1"
    return page(request, "visitor/danger_frame.html" if framed else "visitor/danger.html", session,
                conv=view(conversation_of(request, session)))


@routes.post("/chat/delete", name="delete")
async def delete(request: web.Request) -> web.StreamResponse:
    """Delete this conversation now: gone from memory at once; the counsellor is told."""
    session = cookies.current(request)
    await read_form(request, session)
    assert session is not None
    conv = conversation_of(request, session)
    if conv is not None:
        request.app[keys.CHAT].forget(conv.id)
    session.conversation = ""
    raise see_other("/goodbye?deleted=1")


VISITOR_PAGE: Final = PageKey(Audience.VISITOR)  # the one kept visitor page of a chat: made once, not per poll


class MessagesFrame:
    """The visitor's messages frame for one request.

    One slotted object instead of a Frame of closures: 10,000 held polls keep one each
    alive for the hold time, and every object is more work for the garbage collector.
    """

    __slots__ = ("check", "conv", "lang", "paused", "request", "session", "store")
    path = "/chat/messages"
    # No '#latest': a fragment makes Chromium scroll the page around the frame to it (the header
    # with Quick exit went off screen at every message). The frame keeps its newest line in view
    # with a column-reverse scroller instead (templates/visitor/messages.html).
    fragment = ""

    def __init__(self, request: web.Request, session: Session | None) -> None:
        self.request = request
        self.session = session
        self.store = request.app[keys.CHAT]
        # Held as it was when the request came: a resume elsewhere while it is held is seen
        # when it wakes (moved_on), and the page then says so instead of showing the chat.
        self.conv = held_conversation(request, session)
        self.lang = language(request, session)
        self.paused = request.query.get("paused") == "1"
        self.check = next_check(request)
        # Touching an ended chat would change nothing: only open and waiting chats idle out.
        if self.conv is not None and not self.moved_on() and self.conv.state is not State.ENDED:
            self.store.visitor_here(self.conv)

    def moved_on(self) -> bool:
        """True once the chat was resumed in another browser."""
        return moved(self.session, self.conv)

    def stamp(self) -> str:
        """The version shown: the conversation's, and while waiting the place in line too."""
        conv = self.conv
        if conv is None:
            return "gone"
        if self.moved_on():
            return "moved"
        if conv.state is State.WAITING:
            position = self.store.position(conv)
            nobody = int(not self.request.app[keys.STAFF_SESSIONS].staff_available())
            return f"{conv.visitor_version}.{position}.{wait_minutes(self.request, position)}.{nobody}"
        return str(conv.visitor_version)

    def wait(self, timeout: float) -> Awaitable[bool]:
        """Wait for a change the visitor can see (or, while waiting, a change in the line)."""
        conv = self.conv
        if conv is None or self.moved_on():
            return asyncio.sleep(0, False)
        if conv.state is State.WAITING:
            return wait_any((conv.visitor_waiter(), self.store.board_waiter()), timeout)
        return conv.wait_visitor_newer(conv.visitor_version, timeout)

    def render(self, current: str, url: str) -> bytes:
        """The page for stamp ``current``: kept bytes while the stamp holds (see pagecache.py)."""
        conv = self.conv
        if self.moved_on():
            return self.request.app[keys.RENDERER].render("visitor/moved.html", self.lang, site="visitor",
                                                          frame=True).encode()
        if conv is None:
            return self.page(url)
        # One kept visitor page per chat, in the language asked for last; a paused frame's is not kept.
        key = None if self.paused else VISITOR_PAGE
        return conv.pages.serve(conv.rendered, key, current, url, self.page, variant=self.lang)

    def page(self, refresh_url: str) -> bytes:
        """Render the page afresh."""
        conv = self.conv
        request = self.request
        staff = request.app[keys.STAFF_SESSIONS]
        position = self.store.position(conv) if conv is not None else 0
        return request.app[keys.RENDERER].render(
            "visitor/messages.html", self.lang, site="visitor",
            conv=conv.visitor_view(request.app[keys.CONFIG].poll.frame_messages) if conv is not None else None,
            position=position,
            wait=wait_minutes(request, position) if position else 0, refresh_url=refresh_url,
            nobody=not staff.staff_available(),
            paused=self.paused, check=self.check).encode()

    def final(self) -> bool:
        """True once the conversation has ended, is gone or moved on: the page never changes again."""
        return self.conv is None or self.conv.state is State.ENDED or self.moved_on()


def messages_frame(request: web.Request, session: Session | None) -> MessagesFrame:
    """The visitor's messages frame for this request."""
    return MessagesFrame(request, session)


@routes.get("/chat/messages", name="messages")
async def messages(request: web.Request) -> web.Response:
    """The self-updating list of messages (or the waiting line)."""
    return await serve_frame(request, messages_frame(request, cookies.current(request)))


@routes.get("/chat/history", name="history")
async def history(request: web.Request) -> web.StreamResponse:
    """Earlier messages, as many at a time as the live frame shows: no page grows with the chat.

    ``?before=SEQ`` shows the messages before message SEQ; it is a plain page in the messages
    frame that does not update itself, with a way back to the live messages and Quick exit.
    """
    session = cookies.current(request)
    conv = conversation_of(request, session)
    if conv is None or conv.state is State.ENDED:
        raise see_other("/chat/messages")
    raw = request.query.get("before", "")
    window = request.app[keys.CONFIG].poll.frame_messages
    shown = conv.visitor_view(window, int(raw) if raw.isdigit() and len(raw) <= 9 else None)
    # Later messages than these, beyond what the live frame shows: a link to the next window.
    last = shown.messages[-1].seq if shown.messages else 0
    later_before = last + 1 + window if shown.later > window else 0
    return page(request, "visitor/history.html", session, conv=shown, later_before=later_before)


@routes.get("/chat/compose", name="compose")
async def compose(request: web.Request) -> web.Response:
    """The compose form; it never reloads by itself, so typed text is never lost."""
    session = cookies.current(request)
    conv = held_conversation(request, session)
    if moved(session, conv):
        return moved_page(request, session, frame=True)
    return page(request, "visitor/compose.html", session, conv=view(conv), text="", error=None)


@routes.post("/chat/send", name="send")
async def send(request: web.Request) -> web.StreamResponse:
    """Send a message; on refusal the compose form comes back with the text kept."""
    session = cookies.current(request)
    form = await read_form(request, session)
    if moved(session, held_conversation(request, session)):
        return moved_page(request, session, frame=True)  # nothing is sent from the old browser
    conv = conversation_of(request, session)
    text = form.get("text", "")
    try:
        if conv is None:
            raise NotFound(ErrorCode.GONE)
        request.app[keys.CHAT].post(conv.id, Author.VISITOR, text)
    except ChatError as exc:
        refusal = ERRORS[exc.code]
        return page(request, "visitor/compose.html", session, status=refusal.status, conv=view(conv), text=text,
                    error=refusal.message)
    raise see_other("/chat/compose")


@routes.post("/chat/leave", name="leave")
async def leave(request: web.Request) -> web.StreamResponse:
    """End the conversation and show how to leave no trace."""
    session = cookies.current(request)
    await read_form(request, session)
    conv = conversation_of(request, session)
    if conv is not None:
        request.app[keys.CHAT].end(conv.id, EndReason.VISITOR_LEFT)
    assert session is not None
    session.conversation = ""
    raise see_other("/goodbye")


@routes.get("/goodbye", name="goodbye")
async def goodbye(request: web.Request) -> web.Response:
    """Advice after leaving: close Tor Browser or use New Identity."""
    return page(request, "visitor/goodbye.html", cookies.current(request),
                deleted=request.query.get("deleted") == "1")


@routes.get("/safety", name="safety")
async def safety(request: web.Request) -> web.Response:
    """How to stay safe while using this service."""
    return page(request, "visitor/safety.html", cookies.current(request))


async def quick_exit(request: web.Request) -> web.StreamResponse:
    """End the conversation server-side, forget the session, and go to a neutral page.

    A plain link (GET) rather than a form: it must work in one tap from any page, and the
    session cookie is SameSite=Strict, so another site cannot trigger it for a visitor.
    """
    session = cookies.current(request)
    conv = conversation_of(request, session)
    if conv is not None:
        request.app[keys.CHAT].end(conv.id, EndReason.QUICK_EXIT)
    if session is not None:
        request.app[keys.SESSIONS].drop(session)
    response = web.HTTPSeeOther(request.app[keys.CONFIG].visitor.quick_exit_url)
    cookies.clear_cookie(request, response)
    raise response


routes.get("/exit", name="exit")(quick_exit)
routes.post("/exit", name="exit_post")(quick_exit)
