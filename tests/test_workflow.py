"""The helpline workflow: urgent, availability, transfer, notes, supervision, blocking, hours."""

from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import replace
from pathlib import Path

import pytest

import onionchat.visitor
from onionchat.chat import Author, ChatStore, EndReason, NoteKind, State
from onionchat.config import Config, LimitsConfig
from onionchat.hours import OfficeHours
from onionchat.web.app import Services
from onionchat.web.render import Renderer, templates_dir
from tests.conftest import (
    AiohttpClient,
    NewStaff,
    NewVisitor,
    OpenChatFactory,
    Site,
    make_services,
    only,
    private_client,
    start_chat,
)

SECRET = "STAFF-ONLY-MARKER-7f3a"


async def test_urgent_visitor_jumps_the_queue_and_sees_what_to_do(
        new_visitor: NewVisitor, new_staff: NewStaff, services: Services) -> None:
    calm = await new_visitor()
    await start_chat(calm, "Calm")
    scared = await new_visitor()
    await start_chat(scared, "Scared")
    _, page = await scared.get("/chat")
    response, _ = await scared.post("/chat/urgent")
    assert response.headers["Location"] == "/danger?frame=1"  # opened in the messages frame
    _, page = await scared.get("/danger?frame=1")
    # Before writing anything the button only asks: a flood of empty chats cannot jump the line.
    assert 'class="danger-number" dir="ltr">112</strong>' in page
    assert "Write a few words about what is happening" in page
    _, frame = await scared.get("/chat/messages")
    assert "You are number 2 in line" in frame
    await scared.get("/chat/compose")
    assert (await scared.post("/chat/send", {"text": "he is coming back"}))[0].status == 303
    _, page = await scared.get("/danger?frame=1")
    assert "Your chat is now at the front of the line" in page and "Write a few words" not in page
    _, frame = await scared.get("/chat/messages")
    assert "You are number 1 in line" in frame
    assert [c.nickname for c in services.chat.queue()] == ["Scared", "Calm"]

    counsellor = await new_staff("carla")
    _, board = await counsellor.get("/board")
    assert 'class="urgent"' in board and "URGENT" in board and "1 urgent" in board
    supervisor = await new_staff("sam")
    _, alerts = await supervisor.get("/alerts")
    assert "<title>URGENT (2) onionchat</title>" in alerts and "a visitor says they are in danger" in alerts
    scared_id = services.chat.queue()[0].id
    response, _ = await counsellor.post("/accept-next")
    assert response.headers["Location"] == f"/chat/{scared_id}"
    assert [c.nickname for c in services.chat.chats_of("carla")] == ["Scared"]


async def test_counsellor_can_mark_a_chat_urgent(new_staff: NewStaff,
                                                 services: Services, open_chat: OpenChatFactory) -> None:
    chat = await open_chat()
    staff, cid = chat.staff, chat.cid
    await staff.get(f"/chat/{cid}")
    await staff.post(f"/chat/{cid}/urgent")
    assert services.chat.get(cid).urgent
    supervisor = await new_staff("sam")
    _, overview = await supervisor.get("/supervise")
    assert "URGENT" in overview and 'class="banner"' in overview


async def test_away_counsellors_are_not_counted_and_waiting_visitors_are_told(
        new_visitor: NewVisitor, new_staff: NewStaff, services: Services) -> None:
    staff = await new_staff("carla")
    visitor = await new_visitor()
    await start_chat(visitor)
    _, frame = await visitor.get("/chat/messages")
    assert "No counsellor is available" not in frame
    response, _ = await visitor.get("/chat/messages")
    next_url = response.headers["Refresh"].split("url=", 1)[1].split("#")[0]
    held = asyncio.create_task(visitor.get(next_url))
    await asyncio.sleep(0.1)
    await staff.get("/")
    await staff.post("/availability", {"available": "0"})
    _, frame = await asyncio.wait_for(held, 2)
    assert "No counsellor is available at this moment" in frame
    assert services.staff_sessions.staff_available() == set()


async def test_nobody_available_gives_the_calm_page(aiohttp_client: AiohttpClient, config: Config) -> None:
    config = replace(config, hours=replace(config.hours, open_without_staff=False,
                                           alternatives=["Call the hotline 0800-1234"]))
    services = make_services(config)
    visitor = Site(await private_client(aiohttp_client, onionchat.visitor.create_app(services)))
    _, landing = await visitor.get("/")
    assert "No counsellor is available right now" in landing and "0800-1234" in landing
    response, page = await visitor.post("/start")
    assert response.status == 200 and "Please come back later" in page and "112" in page
    assert len(services.chat) == 0


async def test_outside_office_hours_the_visitor_learns_when_to_return(
        aiohttp_client: AiohttpClient, config: Config) -> None:
    today = dt.datetime.now(dt.UTC).astimezone(OfficeHours.parse("Europe/Amsterdam", [], []).zone).date()
    config = replace(config, hours=replace(config.hours, weekly=["mon-sun 00:00-24:00"],
                                           closed_dates=[today.isoformat()]))
    services = make_services(config)
    visitor = Site(await private_client(aiohttp_client, onionchat.visitor.create_app(services)))
    await visitor.get("/")
    _, page = await visitor.post("/start")
    tomorrow = (today + dt.timedelta(days=1)).isoformat()
    assert "The chat is closed right now" in page and f"We open again on {tomorrow} at 00:00" in page
    assert len(services.chat) == 0


def test_office_hours_rules() -> None:
    hours = OfficeHours.parse("Europe/Amsterdam", ["mon-fri 09:00-17:00", "sat 10:00-12:00"], ["2026-12-25"])
    zone = hours.zone
    assert hours.is_open(dt.datetime(2026, 11, 30, 9, 0, tzinfo=zone))  # Monday
    assert not hours.is_open(dt.datetime(2026, 11, 30, 17, 0, tzinfo=zone))
    assert not hours.is_open(dt.datetime(2026, 11, 29, 11, 0, tzinfo=zone))  # Sunday
    assert not hours.is_open(dt.datetime(2026, 12, 25, 10, 0, tzinfo=zone))  # Christmas, a Friday
    assert hours.next_opening(dt.datetime(2026, 12, 24, 18, 0, tzinfo=zone)) == \
        dt.datetime(2026, 12, 26, 10, 0, tzinfo=zone)
    assert OfficeHours.parse("UTC", [], []).next_opening() is None


async def test_transfer_to_a_colleague_who_sees_why(new_visitor: NewVisitor, new_staff: NewStaff,
                                                    services: Services) -> None:
    visitor = await new_visitor()
    await start_chat(visitor)
    cid = only(services)
    carla = await new_staff("carla")
    dirk = await new_staff("dirk")
    await carla.post(f"/accept/{cid}")
    services.chat.post(cid, Author.VISITOR, "I speak Polish")
    _, page = await carla.get(f"/chat/{cid}")
    assert '<option value="dirk">dirk</option>' in page
    response, _ = await carla.post(f"/chat/{cid}/transfer", {"to": "dirk", "reason": f"Polish {SECRET}"})
    assert response.status == 303
    assert services.chat.get(cid).counsellor == "dirk"
    _, dirk_view = await dirk.get(f"/chat/{cid}/messages")
    assert SECRET in dirk_view and "I speak Polish" in dirk_view
    _, visitor_view = await visitor.get("/chat/messages")
    assert "Another counsellor has taken over the chat" in visitor_view and SECRET not in visitor_view
    response, _ = await carla.get(f"/chat/{cid}/messages")
    assert response.status == 403


async def test_transfer_to_a_colleague_without_room_says_so(services: Services, open_chat: OpenChatFactory) -> None:
    services.accounts.set_max_chats("dirk", 1)
    held_by_dirk = await open_chat(counsellor="dirk")
    chat = await open_chat()
    await held_by_dirk.staff.get("/board")  # dirk's workspace is open: he counts as available
    await chat.staff.get(f"/chat/{chat.cid}")
    response, page = await chat.staff.post(f"/chat/{chat.cid}/transfer", {"to": "dirk", "reason": ""})
    assert response.status == 409 and "That colleague already holds as many chats as allowed" in page
    assert services.chat.get(chat.cid).counsellor == "carla"


async def test_transfer_to_someone_unavailable_is_refused(services: Services, open_chat: OpenChatFactory) -> None:
    chat = await open_chat()
    carla, cid = chat.staff, chat.cid
    await carla.get(f"/chat/{cid}")
    response, page = await carla.post(f"/chat/{cid}/transfer", {"to": "dirk", "reason": ""})
    assert response.status == 409 and "not available" in page
    assert services.chat.get(cid).counsellor == "carla"


async def test_back_to_the_queue_keeps_the_place_and_the_messages(
        new_visitor: NewVisitor, new_staff: NewStaff, services: Services) -> None:
    visitor = await new_visitor()
    await start_chat(visitor)
    cid = only(services)
    await start_chat(await new_visitor())
    carla = await new_staff("carla")
    await carla.post(f"/accept/{cid}")
    services.chat.post(cid, Author.VISITOR, "still here")
    await carla.get(f"/chat/{cid}")
    await carla.post(f"/chat/{cid}/transfer", {"to": "queue"})
    conv = services.chat.get(cid)
    assert conv.state is State.WAITING and services.chat.position(conv) == 1
    _, frame = await visitor.get("/chat/messages")
    assert "still here" in frame and "Another counsellor will take over" in frame


async def test_staff_only_text_never_reaches_a_visitor_page(services: Services, open_chat: OpenChatFactory) -> None:
    chat = await open_chat()
    visitor, carla, cid = chat.visitor, chat.staff, chat.cid
    await carla.get(f"/chat/{cid}/compose")
    await carla.post(f"/chat/{cid}/note", {"note": f"note {SECRET}", "kind": "note"})
    await carla.post(f"/chat/{cid}/note", {"note": f"line {SECRET}", "kind": "staff_line"})
    _, staff_view = await carla.get(f"/chat/{cid}/messages")
    assert staff_view.count(SECRET) == 2 and "only staff see this" in staff_view
    for path in ("/", "/chat", "/chat/messages", "/chat/messages?paused=1", "/chat/compose", "/safety",
                 "/goodbye", "/nope"):
        _, page = await visitor.get(path)
        assert SECRET not in page, path


def test_no_visitor_template_can_render_staff_only_text(tmp_path: Path) -> None:
    """Render every visitor template with a conversation full of staff-only text."""
    config = Config()
    store = ChatStore(LimitsConfig())
    conv, _ = store.start("nick")
    store.accept(conv.id, "carla", 3)
    store.post(conv.id, Author.VISITOR, "hello")
    store.add_note(conv.id, NoteKind.NOTE, "carla", SECRET)
    store.add_note(conv.id, NoteKind.STAFF_LINE, "sam", SECRET)
    renderer = Renderer(config)
    view = conv.visitor_view()
    assert not hasattr(view, "notes")

    class FakeSession:
        csrf = "token"
        passphrase = ""

    templates = sorted(p.relative_to(templates_dir()).as_posix()
                       for p in (templates_dir() / "visitor").glob("*.html"))
    assert "visitor/messages.html" in templates
    for name in templates:
        html = renderer.render(name, "en", site="visitor", session=FakeSession(), conv=view, position=0,
                               wait=0, refresh_url="", paused=False, nobody=False, Author=Author,
                               State=State, EndReason=EndReason, text="", error=None, active=True,
                               reason="", opening=None, passphrase="", urgent=True, deleted=False,
                               later_before=0)
        assert SECRET not in html, name
        assert "carla" not in html, name


async def test_supervisor_watches_read_only_then_joins(new_staff: NewStaff,
                                                       services: Services, open_chat: OpenChatFactory) -> None:
    chat = await open_chat()
    visitor, carla, cid = chat.visitor, chat.staff, chat.cid
    services.chat.post(cid, Author.VISITOR, "can anyone help")
    sam = await new_staff("sam")
    _, overview = await sam.get("/supervise")
    assert f'href="/supervise/{cid}"' in overview
    _, watch = await sam.get(f"/supervise/{cid}")
    assert "read-only" in watch and ">Join this chat</button>" in watch
    _, frame = await sam.get(f"/supervise/{cid}/messages")
    assert "can anyone help" in frame
    response, _ = await sam.post(f"/chat/{cid}/send", {"text": "not yet joined"})
    assert response.status == 403
    await sam.get(f"/supervise/{cid}/line")
    await sam.post(f"/chat/{cid}/note", {"note": f"ask about papers {SECRET}", "kind": "staff_line",
                                         "back": "line"})
    _, carla_view = await carla.get(f"/chat/{cid}/messages")
    assert SECRET in carla_view and "Staff line from sam" in carla_view
    response, _ = await sam.post(f"/supervise/{cid}/join")
    assert response.headers["Location"] == f"/chat/{cid}"
    await sam.get(f"/chat/{cid}/compose")
    response, _ = await sam.post(f"/chat/{cid}/send", {"text": "I am a supervisor"})
    assert response.status == 303
    _, visitor_view = await visitor.get("/chat/messages")
    assert "Another counsellor has joined the chat" in visitor_view and "I am a supervisor" in visitor_view


async def test_counsellors_cannot_supervise(new_visitor: NewVisitor, new_staff: NewStaff,
                                            services: Services) -> None:
    await start_chat(await new_visitor())
    cid = only(services)
    dirk = await new_staff("dirk")
    for path in ("/supervise", f"/supervise/{cid}", f"/supervise/{cid}/messages", f"/supervise/{cid}/line"):
        response, _ = await dirk.get(path)
        assert response.status == 403, path
    response, _ = await dirk.post(f"/supervise/{cid}/join")
    assert response.status == 403


async def test_block_ends_the_chat_and_stops_new_ones_from_that_session(
        new_visitor: NewVisitor, services: Services, open_chat: OpenChatFactory) -> None:
    chat = await open_chat()
    visitor, carla, cid, passphrase = chat.visitor, chat.staff, chat.cid, chat.passphrase
    await carla.get(f"/chat/{cid}")
    response, _ = await carla.post(f"/chat/{cid}/block")
    assert response.status == 303
    assert services.chat.get(cid).end_reason is EndReason.BLOCKED
    _, frame = await visitor.get("/chat/messages")
    assert "This chat has ended." in frame and "block" not in frame.lower()
    response, page = await visitor.post("/start")
    assert response.status == 403 and "not available right now" in page and "block" not in page.lower()
    other = await new_visitor()
    response, _ = await other.post("/resume", {"passphrase": passphrase})
    assert response.status == 404
    response, _ = await other.post("/start")
    assert response.status == 303  # a new session is not blocked: no addresses involved


async def test_visitor_deletes_the_conversation_now(services: Services, open_chat: OpenChatFactory) -> None:
    chat = await open_chat()
    visitor, carla, cid = chat.visitor, chat.staff, chat.cid
    services.chat.post(cid, Author.VISITOR, "please forget this")
    conv = services.chat.get(cid)
    await visitor.get("/chat")
    response, _ = await visitor.post("/chat/delete")
    assert response.headers["Location"] == "/goodbye?deleted=1"
    assert services.chat.find(cid) is None and conv.messages == []
    assert conv.end_reason is EndReason.DELETED
    _, page = await visitor.get("/goodbye?deleted=1")
    assert "You deleted the conversation" in page
    response, _ = await carla.get(f"/chat/{cid}/messages")
    assert response.status == 404


async def test_canned_reply_is_inserted_without_losing_typed_text(services: Services,
                                                                  open_chat: OpenChatFactory) -> None:
    from onionchat.canned import CannedReply

    services.canned._replies["c1"] = CannedReply(id="c1", lang="en", title="Confidentiality",
                                                 text="What you tell me stays between us.")
    chat = await open_chat()
    carla, cid = chat.staff, chat.cid
    _, compose = await carla.get(f"/chat/{cid}/compose")
    assert "Confidentiality (en)" in compose
    response, page = await carla.post(f"/chat/{cid}/send", {"text": "Hello, I am Carla.", "canned": "c1",
                                                            "action": "insert"})
    assert response.status == 200
    assert "Hello, I am Carla.\nWhat you tell me stays between us.</textarea>" in page
    assert services.chat.get(cid).messages[-1].event == "joined"  # nothing was sent


@pytest.mark.parametrize("role_name", ["carla", "sam"])
async def test_board_shows_language_of_each_visitor(new_visitor: NewVisitor, new_staff: NewStaff,
                                                        role_name: str) -> None:
    await start_chat(await new_visitor())
    staff = await new_staff(role_name)
    _, board = await staff.get("/board")
    assert '<span class="lang"><span lang="en" dir="ltr">English</span> (en)</span>' in board


async def test_counsellor_is_offered_the_wrapup_when_the_visitor_leaves(services: Services,
                                                                        open_chat: OpenChatFactory) -> None:
    chat = await open_chat()
    visitor, carla, cid = chat.visitor, chat.staff, chat.cid
    await visitor.get("/chat")
    await visitor.post("/chat/leave")
    _, view = await carla.get(f"/chat/{cid}/messages")
    assert f'href="/wrapup/{cid}"' in view and "The visitor left the chat" in view
