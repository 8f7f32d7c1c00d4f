"""The counsellor's workspace: panes, the board, the connection budget, presence, alerts, logging out."""

from __future__ import annotations

import asyncio
import re
from dataclasses import replace

import pytest

from onionchat.chat import Author
from onionchat.config import Config
from onionchat.web.app import Services
from onionchat.web.favicon import Favicons
from tests.conftest import NewStaff, NewVisitor, OpenChatFactory, Site, only, start_chat

HELD = 2  # this module's budget of held frames per staff browser


@pytest.fixture
def config(config: Config) -> Config:
    """The suite's config with a small budget, so that three frames are already one too many."""
    return replace(config, poll=replace(config.poll, staff_held_frames=HELD))


def next_url(refresh: str) -> str:
    """The URL a Refresh header asks for next, without its fragment."""
    return refresh.split("url=", 1)[1].split("#")[0]


async def held_request(site: Site, path: str) -> asyncio.Task[tuple[object, str]]:
    """Ask ``path``, then its next version, which the server holds; the task of that second request."""
    response, _ = await site.get(path)
    task = asyncio.create_task(site.get(next_url(response.headers["Refresh"])))
    await asyncio.sleep(0.1)
    return task


async def test_the_workspace_never_reloads_itself_and_keeps_its_exact_url(new_staff: NewStaff) -> None:
    carla = await new_staff("carla")
    response, page = await carla.get("/")
    assert "Refresh" not in response.headers and 'http-equiv="refresh"' not in page
    assert all(f'name="pane-{n}"' in page and f'src="/pane/{n}"' in page for n in (1, 2, 3))
    assert 'src="/status"' in page and 'src="/board"' in page
    # The board's pane links are "/#pane-N": from any other URL they would reload the page.
    response, _ = await carla.get("/?paused=1")
    assert response.status == 303 and response.headers["Location"] == "/"
    for path in ("/status", "/pane/1"):
        response, page = await carla.get(path)
        assert "Refresh" not in response.headers and 'http-equiv="refresh"' not in page, path
    response, page = await carla.get("/board")
    assert response.headers["Refresh"].startswith("0; url=/board?v=")
    assert 'http-equiv="refresh"' not in page  # the header alone: a meta 0 would undo the budget
    response, _ = await carla.get("/pane/9")
    assert response.status == 404


async def test_accepted_chats_fill_free_panes_and_a_transfer_is_highlighted_until_opened(
        new_visitor: NewVisitor, new_staff: NewStaff, services: Services) -> None:
    for nickname in ("One", "Two"):
        await start_chat(await new_visitor(), nickname)
    one, two = (c.id for c in services.chat.queue())
    carla, dirk = await new_staff("carla"), await new_staff("dirk")
    _, board = await carla.get("/board")
    assert 'target="pane-1"' in board and 'name="pane" value="1"' in board  # the form lands in the free pane
    await carla.post(f"/accept/{one}", {"pane": "1"})
    _, board = await carla.get("/board")
    assert 'target="pane-2"' in board and "Pane 2: free" in board
    # Aimed at a pane that is taken (another tab accepted into it): the chat goes to a free one.
    response, _ = await carla.post(f"/accept/{two}", {"pane": "1"})
    assert response.headers["Location"] == "/pane/1" and services.chat.get(two).slot == 2

    await dirk.get("/board")
    response, _ = await carla.post(f"/chat/{two}/transfer", {"to": "dirk", "reason": "Polish", "pane": "2"})
    assert response.headers["Location"] == "/pane/2"
    _, board = await dirk.get("/board")
    assert 'class="slot handed"' in board and 'href="/pane/1" target="pane-1"' in board
    _, alerts = await dirk.get("/alerts")
    assert "1 chat was handed over to you" in alerts and "New message – onionchat</title>" in alerts
    _, pane = await dirk.get("/pane/1")
    assert "Chat with Two" in pane
    _, board = await dirk.get("/board")
    assert "handed" not in board and 'href="/#pane-1" target="_top"' in board  # opened: no reload any more


async def test_a_board_swaps_only_when_what_it_shows_changes(open_chat: OpenChatFactory, services: Services) -> None:
    chat = await open_chat("Mia")
    services.chat.post(chat.cid, Author.VISITOR, "hello?")
    held = await held_request(chat.staff, "/board")
    services.chat.post(chat.cid, Author.VISITOR, "anyone?")  # still "new message": the board keeps its page
    await asyncio.sleep(0.3)
    assert not held.done()
    await chat.staff.post(f"/chat/{chat.cid}/send", {"text": "Yes, I am here."})
    _, board = await asyncio.wait_for(held, 1)
    assert ">new message</strong>" not in board


async def test_one_browser_holds_at_most_its_budget_of_frames(open_chat: OpenChatFactory, new_staff: NewStaff,
                                                              services: Services) -> None:
    chat = await open_chat("Mia")
    carla = chat.staff
    held = [await held_request(carla, "/board"), await held_request(carla, f"/chat/{chat.cid}/messages")]
    # A third frame of the same browser is answered at once and asks again after interval_seconds.
    response, _ = await carla.get(f"/chat/{chat.cid}/messages")
    response, _ = await asyncio.wait_for(carla.get(next_url(response.headers["Refresh"])), 1)
    interval = services.config.poll.interval_seconds
    assert response.headers["Refresh"].startswith(f"{interval}; url=/chat/{chat.cid}/messages?v=")
    assert not any(task.done() for task in held)
    # Another browser has its own budget.
    dirk = await new_staff("dirk")
    other = await held_request(dirk, "/board")
    assert not other.done()
    services.chat.post(chat.cid, Author.VISITOR, "a change for everyone waiting")
    await asyncio.wait_for(asyncio.gather(*held), 2)
    # With the held ones answered, the budget is free again.
    response, _ = await carla.get(f"/chat/{chat.cid}/messages")
    assert response.headers["Refresh"].startswith("0; ")
    again = await held_request(carla, f"/chat/{chat.cid}/messages")
    assert not again.done()
    again.cancel()
    other.cancel()


class LeftBehind:
    """A held request of a page the browser has left: its connection is gone."""

    transport = None


async def test_frames_of_a_page_left_behind_do_not_count(open_chat: OpenChatFactory, services: Services) -> None:
    chat = await open_chat("Mia")
    (session,) = [s for s in services.staff_sessions._sessions.values() if s.staff == "carla"]
    # The real server leaves such requests waiting until their hold ends (aiohttp cancels handlers
    # of lost connections only in its test server): here they are planted.
    session.holding = {1: LeftBehind(), 2: LeftBehind()}
    fresh = [await held_request(chat.staff, "/board"), await held_request(chat.staff, f"/chat/{chat.cid}/messages")]
    assert not any(task.done() for task in fresh)
    for task in fresh:
        task.cancel()


async def test_a_closed_browser_stops_counting_as_available(new_visitor: NewVisitor, new_staff: NewStaff,
                                                            services: Services) -> None:
    carla = await new_staff("carla")
    assert services.staff_sessions.staff_available() == {"carla"}
    visitor = await new_visitor()
    await start_chat(visitor)
    _, frame = await visitor.get("/chat/messages")
    assert "Estimated wait: about 8 minutes" in frame and "No counsellor is available" not in frame
    # The browser closed: its frames stop asking. After the presence window nobody counts.
    window = services.config.poll.presence_seconds()
    for session in services.staff_sessions._sessions.values():
        session.frames_asked_at -= window + 1
    assert services.staff_sessions.staff_available() == set()
    _, frame = await visitor.get("/chat/messages")
    # Never an estimate next to "nobody is there".
    assert "No counsellor is available" in frame and "Estimated wait" not in frame
    assert "You are number 1 in line." in frame
    await carla.get("/board")  # the page asks again: available again
    assert services.staff_sessions.staff_available() == {"carla"}


async def test_supervisors_and_admins_start_away_and_may_choose_to_take_chats(
        open_chat: OpenChatFactory, new_staff: NewStaff, services: Services) -> None:
    chat = await open_chat()
    sam = await new_staff("sam")
    assert services.staff_sessions.staff_available() == {"carla"}
    _, status = await sam.get("/status")
    assert "You are away: no new chats." in status
    _, pane = await chat.staff.get("/pane/1")
    assert '<option value="sam">' not in pane  # not offered for a transfer either
    await sam.post("/availability", {"available": "1"})
    assert services.staff_sessions.staff_available() == {"carla", "sam"}
    _, pane = await chat.staff.get("/pane/1")
    assert '<option value="sam">sam</option>' in pane


async def test_log_out_with_open_chats_asks_who_takes_them(new_visitor: NewVisitor, new_staff: NewStaff,
                                                           services: Services) -> None:
    for _ in range(2):
        await start_chat(await new_visitor())
    carla, dirk = await new_staff("carla"), await new_staff("dirk")
    for conv in services.chat.queue():
        await carla.post(f"/accept/{conv.id}")
    response, page = await carla.post("/logout")
    assert response.status == 200 and "You still hold 2 chats" in page
    assert '<option value="dirk">dirk</option>' in page and services.chat.held_by("carla") == 2
    _, board = await carla.get("/board")
    assert "Your chats (2 / 3)" in board  # still signed in, nothing changed
    await dirk.post(f"/accept/{(await _one_more(new_visitor, services))}")
    await dirk.post(f"/accept/{(await _one_more(new_visitor, services))}")
    response, page = await carla.post("/logout", {"chats": "transfer", "to": "dirk", "reason": "end of shift"})
    assert response.status == 409 and services.chat.held_by("carla") == 2  # dirk has room for one: none moves
    response, _ = await carla.post("/logout", {"chats": "queue"})
    assert response.status == 303 and response.headers["Location"] == "/login"
    assert services.chat.held_by("carla") == 0 and services.chat.waiting_count() == 2
    response, _ = await carla.get("/board")
    assert response.headers["Location"] == "/login"


async def _one_more(new_visitor: NewVisitor, services: Services) -> str:
    """A new visitor starts a chat; its id."""
    await start_chat(await new_visitor())
    return max(services.chat.queue(), key=lambda c: c.created).id


async def test_log_out_hands_the_chats_to_a_colleague(open_chat: OpenChatFactory, new_staff: NewStaff,
                                                      services: Services) -> None:
    chat = await open_chat("Mia")
    dirk = await new_staff("dirk")
    response, _ = await chat.staff.post("/logout", {"chats": "transfer", "to": "dirk", "reason": "end of shift"})
    assert response.status == 303 and services.chat.get(chat.cid).counsellor == "dirk"
    _, view = await dirk.get(f"/chat/{chat.cid}/messages")
    assert "end of shift" in view


async def test_mark_urgent_answers_into_the_messages_frame(open_chat: OpenChatFactory) -> None:
    chat = await open_chat()
    response, _ = await chat.staff.post(f"/chat/{chat.cid}/urgent", {"pane": "1"})
    assert response.headers["Location"] == f"/chat/{chat.cid}/messages?pane=1#latest"
    _, view = await chat.staff.get(f"/chat/{chat.cid}/messages?pane=1")
    assert "URGENT: the visitor may be in danger." in view


async def test_icons_and_the_alerts_tab(new_visitor: NewVisitor, new_staff: NewStaff, services: Services) -> None:
    carla = await new_staff("carla")
    visitor = await new_visitor()
    for site in (carla, visitor):
        response = await site.client.get("/favicon.ico")
        assert response.status == 200 and response.content_type == "image/png"
        assert (await response.read()).startswith(b"\x89PNG\r\n\x1a\n")
    response, alerts = await carla.get("/alerts")
    interval = services.config.poll.interval_seconds
    # Answered at once and asking again after a while: never a held page that seems to load forever.
    assert response.headers["Refresh"] == f"{interval}; url=/alerts?v=1"
    icons = Favicons()
    assert f'<link rel="icon" href="{icons.alert(0, urgent=False, reply=False)}">' in alerts
    await start_chat(visitor)
    _, alerts = await carla.get("/alerts")
    assert "<title>(1) onionchat</title>" in alerts and "1 visitor is waiting" in alerts
    assert f'href="{icons.alert(1, urgent=False, reply=False)}"' in alerts
    await carla.post(f"/accept/{only(services)}")
    services.chat.post(only(services), Author.VISITOR, "hello")
    _, alerts = await carla.get("/alerts")
    assert "<title>New message – onionchat</title>" in alerts
    assert f'href="{icons.alert(0, urgent=False, reply=True)}"' in alerts
    drawn = {icons.alert(n, urgent=u, reply=r) for n in (0, 1, 2, 10, 99, 100, 5000) for u in (False, True)
             for r in (False, True)}
    assert len(drawn) == 6 * 4  # every count up to 99 its own icon; beyond, one "+"
    assert all(re.fullmatch(r"data:image/png;base64,[A-Za-z0-9+/=]+", uri) for uri in drawn)


async def test_login_sets_the_new_session_up_for_the_workspace(new_staff: NewStaff, services: Services) -> None:
    await new_staff("carla")
    (session,) = [s for s in services.staff_sessions._sessions.values() if s.staff == "carla"]
    assert session.available and session.frames_asked_at > 0 and not session.holding
