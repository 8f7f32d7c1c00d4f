"""Counsellors' routes: accepting, holding, answering, ending and handing over chats."""

from __future__ import annotations

from aiohttp import web

from onionchat.accounts import Account
from onionchat.chat import Author, Conversation, EndReason, Message, NoteKind, StaffNote, State
from onionchat.errors import ChatError, ErrorCode
from onionchat.pagecache import Audience, PageKey
from onionchat.sessions import Session
from onionchat.web import cookies, keys
from onionchat.web.csrf import read_form
from onionchat.web.guard import ERRORS, Refused
from onionchat.web.pages import language, see_other
from onionchat.web.poll import Frame, next_check, serve_frame

from .access import conversation, max_chats, page, pane_number, pane_or_workspace, present, signed_in
from .workspace import colleagues

routes = web.RouteTableDef()


def back_to(pane: int, cid: str) -> str:
    """Where an accepted chat opens: its workspace pane, or a page of its own."""
    return f"/pane/{pane}" if pane else f"/chat/{cid}"


@routes.post("/accept/{cid}", name="accept")
async def accept(request: web.Request) -> web.StreamResponse:
    """Take a waiting visitor, into the workspace pane the form was aimed at when it is free."""
    session, account = signed_in(request)
    form = await read_form(request, session)
    pane = pane_number(form.get("pane", ""), account, request)
    conv = request.app[keys.CHAT].accept(request.match_info["cid"], account.name, max_chats(request, account), pane)
    # The answer lands in the pane the form targets; it shows whichever chat holds that pane.
    raise see_other(back_to(pane, conv.id))


@routes.post("/accept-next", name="accept_next")
async def accept_next(request: web.Request) -> web.StreamResponse:
    """Take the next visitor in serving order: urgent first, then longest waiting."""
    session, account = signed_in(request)
    form = await read_form(request, session)
    pane = pane_number(form.get("pane", ""), account, request)
    store = request.app[keys.CHAT]
    queue = store.queue()
    if not queue:
        raise see_other(pane_or_workspace(pane))
    conv = store.accept(queue[0].id, account.name, max_chats(request, account), pane)
    raise see_other(back_to(pane, conv.id))


@routes.get("/chat/{cid}", name="staff_chat")
async def chat(request: web.Request) -> web.Response:
    """One chat in a tab of its own (a supervisor who joined, or opened so): its frames and controls."""
    session, account = signed_in(request)
    conv = conversation(request, account)
    request.app[keys.CHAT].opened(conv, account.name)
    return page(request, "staff/chat.html", session, conv=conv, account=account,
                colleagues=colleagues(request, account))


def timeline(conv: Conversation) -> list[Message | StaffNote]:
    """Messages and staff-only notes in the order they were written."""
    return sorted([*conv.messages, *conv.notes], key=lambda item: item.at)


def staff_messages_frame(request: web.Request, account: Account, conv: Conversation, path: str) -> Frame:
    """The staff view of a conversation: messages and staff-only notes, updating itself.

    ``?pane=N``: shown in pane N of the workspace (its end-of-chat links stay in that pane).
    """
    renderer = request.app[keys.RENDERER]
    paused = request.query.get("paused") == "1"
    check = next_check(request)
    holder = conv.counsellor == account.name
    lang = language(request, cookies.current(request))
    pane = pane_number(request.query.get("pane", ""), account, request)
    if pane:
        path = f"{path}?pane={pane}"

    window = request.app[keys.CONFIG].poll.frame_messages

    def page(refresh_url: str) -> bytes:
        lines = timeline(conv)
        earlier = max(0, len(lines) - window)  # the whole conversation is one link away
        return renderer.render("staff/messages.html", lang, conv=conv, refresh_url=refresh_url,
                               timeline=lines[earlier:], earlier=earlier, wrapup_due=any(
                                   cid == conv.id for cid, _ in request.app[keys.STATS].pending_for(account.name)),
                               paused=paused, check=check, site="staff", pane=pane).encode()

    def render(current: str, url: str) -> bytes:
        key = None if paused else PageKey(Audience.STAFF, viewer="" if holder else account.name, pane=pane)
        return conv.pages.serve(conv.rendered, key, current, url, page, variant=lang)

    conv.touch()
    return Frame(stamp=lambda: str(conv.version), wait=lambda t: conv.waiter()(t), render=render,
                 path=path, final=lambda: conv.state is State.ENDED)


@routes.get("/chat/{cid}/messages", name="staff_messages")
async def messages(request: web.Request) -> web.Response:
    """The counsellor's self-updating view of one conversation."""
    session, account = signed_in(request)
    conv = conversation(request, account, write=False)
    present(request, session)
    return await serve_frame(request, staff_messages_frame(request, account, conv, f"/chat/{conv.id}/messages"),
                             session)


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
    """Mark a chat urgent: it stands out for everyone and supervisors are alerted.

    The form answers into the chat's messages frame, which shows the mark: the reply box
    beside it keeps what was typed.
    """
    session, account = signed_in(request)
    conv = conversation(request, account)
    form = await read_form(request, session)
    request.app[keys.CHAT].mark_urgent(conv.id, account.name)
    pane = pane_number(form.get("pane", ""), account, request)
    raise see_other(f"/chat/{conv.id}/messages?pane={pane}#latest" if pane else f"/chat/{conv.id}/messages#latest")


@routes.post("/chat/{cid}/transfer", name="staff_transfer")
async def transfer(request: web.Request) -> web.StreamResponse:
    """Hand the chat to an available colleague (who sees why), or back to the queue."""
    session, account = signed_in(request)
    conv = conversation(request, account)
    form = await read_form(request, session)
    store = request.app[keys.CHAT]
    target = form.get("to", "")
    pane = pane_number(form.get("pane", ""), account, request)
    if target == "queue":
        store.requeue(conv.id, account.name)
    else:
        hand_over(request, account, conv, target, form.get("reason", ""))
    raise see_other(pane_or_workspace(pane))


def hand_over(request: web.Request, account: Account, conv: Conversation, target: str, reason: str) -> None:
    """Give ``conv`` to the colleague ``target``; refused unless they are available for new chats."""
    colleague = request.app[keys.ACCOUNTS].get(target)
    if colleague is None or target == account.name or target not in request.app[keys.SESSIONS].staff_available():
        raise Refused(ErrorCode.NOT_AVAILABLE)
    request.app[keys.CHAT].transfer(conv.id, account.name, target, reason, max_chats(request, colleague))


@routes.post("/chat/{cid}/block", name="staff_block")
async def block(request: web.Request) -> web.StreamResponse:
    """End an abusive visitor's chat and refuse new chats from their session for a while."""
    session, account = signed_in(request)
    conv = conversation(request, account)
    form = await read_form(request, session)
    request.app[keys.CHAT].block(conv.id, account.name, request.app[keys.CONFIG].staff.block_minutes)
    raise see_other(wrapup_url(conv.id, pane_number(form.get("pane", ""), account, request)))


def wrapup_url(cid: str, pane: int) -> str:
    """The wrap-up after a chat ended: in its pane, or as a page of its own."""
    return f"/wrapup/{cid}?pane={pane}" if pane else f"/wrapup/{cid}"


@routes.post("/chat/{cid}/end", name="staff_end")
async def end(request: web.Request) -> web.StreamResponse:
    """End the chat: the visitor is told, the text is wiped from memory, then the wrap-up."""
    session, account = signed_in(request)
    conv = conversation(request, account)
    form = await read_form(request, session)
    request.app[keys.CHAT].end(conv.id, EndReason.STAFF_ENDED, actor=account.name)
    raise see_other(wrapup_url(conv.id, pane_number(form.get("pane", ""), account, request)))
