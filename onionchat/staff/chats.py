"""Counsellors' routes: the self-updating dashboard, accepting, holding and handing over chats."""

from __future__ import annotations

from aiohttp import web

from onionchat.accounts import Account
from onionchat.chat import Author, ChatStore, Conversation, EndReason, Message, NoteKind, StaffNote, State
from onionchat.errors import ChatError, ErrorCode
from onionchat.pagecache import Audience, PageKey, Rendered
from onionchat.sessions import Session
from onionchat.web import cookies, keys
from onionchat.web.csrf import read_form
from onionchat.web.guard import ERRORS, Refused
from onionchat.web.pages import language, see_other
from onionchat.web.poll import Frame, Waiter, next_check, serve_frame, wait_any

from .access import conversation, is_supervisor, max_chats, page, signed_in, urgent_live

routes = web.RouteTableDef()


def board_or_chats_changed(store: ChatStore, name: str) -> Waiter:
    """Wait for a change of the board (queue, assignments) or of any chat ``name`` holds."""

    async def wait(timeout: float) -> bool:
        return await wait_any([store.board_waiter(), *(c.waiter() for c in store.chats_of(name))], timeout)

    return wait


def board_frame(request: web.Request, session: Session, account: Account) -> Frame:
    """The dashboard: the queue and this counsellor's chats, updating itself."""
    store = request.app[keys.CHAT]
    renderer = request.app[keys.RENDERER]
    staff_sessions = request.app[keys.SESSIONS]

    def stamp() -> str:
        mine = store.chats_of(account.name)
        unread = sum(1 for c in mine if c.unread)
        return f"{store.board_version}.{unread}.{int(session.available)}"

    def render(current: str, url: str) -> bytes:
        return renderer.render(
            "staff/dashboard.html", language(request, session), session=session, site="staff", account=account,
            queue=store.queue(), mine=store.chats_of(account.name), refresh_url=url,
            paused=request.query.get("paused") == "1", check=next_check(request), supervisor=is_supervisor(account),
            urgent=urgent_live(request), available=sorted(staff_sessions.staff_available()),
            limit=max_chats(request, account), held=store.held_by(account.name)).encode()

    return Frame(stamp=stamp, wait=board_or_chats_changed(store, account.name), render=render, path="/")


@routes.get("/", name="dashboard")
async def dashboard(request: web.Request) -> web.Response:
    """Waiting queue (urgent first), own chats, and the number waiting in the title."""
    session, account = signed_in(request)
    return await serve_frame(request, board_frame(request, session, account))


@routes.post("/availability", name="availability")
async def availability(request: web.Request) -> web.StreamResponse:
    """Available for new chats, or away."""
    session, _ = signed_in(request)
    form = await read_form(request, session)
    session.available = form.get("available") == "1"
    request.app[keys.CHAT].notify_board()  # waiting visitors learn whether anyone is there
    raise see_other("/")


@routes.post("/accept/{cid}", name="accept")
async def accept(request: web.Request) -> web.StreamResponse:
    """Take a waiting visitor."""
    session, account = signed_in(request)
    await read_form(request, session)
    conv = request.app[keys.CHAT].accept(request.match_info["cid"], account.name, max_chats(request, account))
    raise see_other(f"/chat/{conv.id}")


@routes.post("/accept-next", name="accept_next")
async def accept_next(request: web.Request) -> web.StreamResponse:
    """Take the next visitor in serving order: urgent first, then longest waiting."""
    session, account = signed_in(request)
    await read_form(request, session)
    store = request.app[keys.CHAT]
    queue = store.queue()
    if not queue:
        raise see_other("/")
    conv = store.accept(queue[0].id, account.name, max_chats(request, account))
    raise see_other(f"/chat/{conv.id}")


@routes.get("/chat/{cid}", name="staff_chat")
async def chat(request: web.Request) -> web.Response:
    """One held chat: its frames, handing over, and links to this counsellor's other chats."""
    session, account = signed_in(request)
    conv = conversation(request, account)
    others = sorted(n for n in request.app[keys.SESSIONS].staff_available() if n != account.name)
    return page(request, "staff/chat.html", session, conv=conv, account=account,
                colleagues=others, supervisor=is_supervisor(account))


def timeline(conv: Conversation) -> list[Message | StaffNote]:
    """Messages and staff-only notes in the order they were written."""
    return sorted([*conv.messages, *conv.notes], key=lambda item: item.at)


def staff_messages_frame(request: web.Request, account: Account, conv: Conversation, path: str) -> Frame:
    """The staff view of a conversation: messages and staff-only notes, updating itself."""
    renderer = request.app[keys.RENDERER]
    paused = request.query.get("paused") == "1"
    check = next_check(request)
    holder = conv.counsellor == account.name
    lang = language(request, cookies.current(request))

    window = request.app[keys.CONFIG].poll.frame_messages

    def page(refresh_url: str) -> bytes:
        lines = timeline(conv)
        earlier = max(0, len(lines) - window)  # the whole conversation is one link away
        return renderer.render("staff/messages.html", lang, conv=conv, refresh_url=refresh_url,
                               timeline=lines[earlier:], earlier=earlier, wrapup_due=any(
                                   cid == conv.id for cid, _ in request.app[keys.STATS].pending_for(account.name)),
                               paused=paused, check=check, site="staff").encode()

    def render(current: str, url: str) -> bytes:
        if holder:
            conv.staff_seen = conv.messages[-1].seq if conv.messages else 0
        key = PageKey(Audience.STAFF, lang, paused, check, viewer="" if holder else account.name)
        cached = conv.rendered.get(key)
        if cached is None or not cached.fits(current, url):
            cached = conv.rendered[key] = Rendered(current, bool(url), page)
        return cached.body(url)

    conv.touch()
    return Frame(stamp=lambda: str(conv.version), wait=lambda t: conv.waiter()(t), render=render,
                 path=path, final=lambda: conv.state is State.ENDED)


@routes.get("/chat/{cid}/messages", name="staff_messages")
async def messages(request: web.Request) -> web.Response:
    """The counsellor's self-updating view of one conversation."""
    _, account = signed_in(request)
    conv = conversation(request, account, write=False)
    return await serve_frame(request, staff_messages_frame(request, account, conv, f"/chat/{conv.id}/messages"))


@routes.get("/chat/{cid}/history", name="staff_history")
async def history(request: web.Request) -> web.Response:
    """The whole conversation, notes included, on a page of its own that does not update itself.

    The live frame shows only the latest lines; whoever may read the chat may read all of it here.
    """
    session, account = signed_in(request)
    conv = conversation(request, account, write=False)
    back = f"/chat/{conv.id}" if conv.has_staff(account.name) else f"/supervise/{conv.id}"
    return page(request, "staff/history.html", session, conv=conv, timeline=timeline(conv), back=back)


def compose_page(request: web.Request, session: Session, conv: Conversation, *, text: str = "",
                 refused: ChatError | None = None) -> web.Response:
    """The compose frame: the reply box, canned replies, and the staff-only note form.

    After a refusal (``refused``) the form comes back with its text and the reason above it.
    """
    canned = request.app[keys.CANNED]
    own = canned.for_language(conv.lang)
    others = [r for r in canned.for_language("en") if conv.lang != "en"]
    refusal = ERRORS[refused.code] if refused is not None else None
    return page(request, "staff/compose.html", session, status=refusal.status if refusal else 200, conv=conv,
                text=text, error=refusal.message if refusal else None, canned=own + others)


@routes.get("/chat/{cid}/compose", name="staff_compose")
async def compose(request: web.Request) -> web.Response:
    """The counsellor's compose form; never reloads by itself."""
    session, account = signed_in(request)
    return compose_page(request, session, conversation(request, account))


@routes.post("/chat/{cid}/send", name="staff_send")
async def send(request: web.Request) -> web.StreamResponse:
    """Send a reply, or insert a canned reply into the box without losing what was typed."""
    session, account = signed_in(request)
    conv = conversation(request, account)
    form = await read_form(request, session)
    text = form.get("text", "")
    if form.get("action") == "insert":
        reply = request.app[keys.CANNED].get(form.get("canned", ""))
        if reply is not None:
            text = f"{text.rstrip()}\n{reply.text}" if text.strip() else reply.text
        return compose_page(request, session, conv, text=text)
    try:
        request.app[keys.CHAT].post(conv.id, Author.STAFF, text, sender=account.name)
    except ChatError as exc:
        return compose_page(request, session, conv, text=text, refused=exc)
    raise see_other(f"/chat/{conv.id}/compose")


@routes.post("/chat/{cid}/note", name="staff_note")
async def note(request: web.Request) -> web.StreamResponse:
    """Add an internal note or a line to the supervisor: staff-only, never shown to the visitor."""
    session, account = signed_in(request)
    conv = conversation(request, account, write=False)
    form = await read_form(request, session)
    kind = NoteKind.STAFF_LINE if form.get("kind") == NoteKind.STAFF_LINE.value else NoteKind.NOTE
    text = form.get("note", "")
    back = form.get("back", "compose")
    try:
        request.app[keys.CHAT].add_note(conv.id, kind, account.name, text)
    except ChatError as exc:
        if back != "compose":
            raise
        return compose_page(request, session, conv, refused=exc)
    raise see_other(f"/supervise/{conv.id}/line" if back == "line" else f"/chat/{conv.id}/compose")


@routes.post("/chat/{cid}/urgent", name="staff_urgent")
async def urgent(request: web.Request) -> web.StreamResponse:
    """Mark a chat urgent: it stands out for everyone and supervisors are alerted."""
    session, account = signed_in(request)
    conv = conversation(request, account)
    await read_form(request, session)
    request.app[keys.CHAT].mark_urgent(conv.id, account.name)
    raise see_other(f"/chat/{conv.id}")


@routes.post("/chat/{cid}/transfer", name="staff_transfer")
async def transfer(request: web.Request) -> web.StreamResponse:
    """Hand the chat to an available colleague (who sees why), or back to the queue."""
    session, account = signed_in(request)
    conv = conversation(request, account)
    form = await read_form(request, session)
    store = request.app[keys.CHAT]
    target = form.get("to", "")
    if target == "queue":
        store.requeue(conv.id, account.name)
        raise see_other("/")
    colleague = request.app[keys.ACCOUNTS].get(target)
    if colleague is None or target not in request.app[keys.SESSIONS].staff_available():
        raise Refused(ErrorCode.NOT_AVAILABLE)
    store.transfer(conv.id, account.name, target, form.get("reason", ""), max_chats(request, colleague))
    raise see_other("/")


@routes.post("/chat/{cid}/block", name="staff_block")
async def block(request: web.Request) -> web.StreamResponse:
    """End an abusive visitor's chat and refuse new chats from their session for a while."""
    session, account = signed_in(request)
    conv = conversation(request, account)
    await read_form(request, session)
    request.app[keys.CHAT].block(conv.id, account.name, request.app[keys.CONFIG].staff.block_minutes)
    raise see_other(f"/wrapup/{conv.id}")


@routes.post("/chat/{cid}/end", name="staff_end")
async def end(request: web.Request) -> web.StreamResponse:
    """End the chat: the visitor is told, the text is wiped from memory, then the wrap-up."""
    session, account = signed_in(request)
    conv = conversation(request, account)
    await read_form(request, session)
    request.app[keys.CHAT].end(conv.id, EndReason.STAFF_ENDED, actor=account.name)
    raise see_other(f"/wrapup/{conv.id}")


@routes.get("/mychats", name="mychats")
async def mychats(request: web.Request) -> web.Response:
    """A small self-updating list of this counsellor's chats, marking those with new messages."""
    session, account = signed_in(request)
    store = request.app[keys.CHAT]
    renderer = request.app[keys.RENDERER]
    requested = request.query.get("current", "")
    # Only an id of one's own chats goes back into a URL: nothing else is echoed.
    current_id = next((c.id for c in store.chats_of(account.name) if c.id == requested), "")

    def stamp() -> str:
        mine = store.chats_of(account.name)
        return ".".join([str(store.board_version)] + [f"{c.version}" for c in mine])

    def render(current: str, url: str) -> bytes:
        return renderer.render("staff/mychats.html", language(request, session), mine=store.chats_of(account.name),
                               current_id=current_id, queue_length=len(store.queue()), refresh_url=url,
                               site="staff", session=session, urgent=urgent_live(request)).encode()

    path = f"/mychats?current={current_id}" if current_id else "/mychats"
    return await serve_frame(request, Frame(stamp=stamp, wait=board_or_chats_changed(store, account.name),
                                            render=render, path=path))
