"""The visitor site through a real HTTP client: start, wait, chat, leave, quick exit, resume."""

from __future__ import annotations

import asyncio
import re
import time

from onionchat.chat import Author, EndReason, State
from onionchat.web.app import Services
from tests.conftest import NewStaff, NewVisitor, OpenChatFactory, only, start_chat


async def test_landing_page_has_start_and_resume_and_quick_exit(new_visitor: NewVisitor) -> None:
    visitor = await new_visitor()
    response, page = await visitor.get("/")
    assert response.status == 200
    assert ">Start chat</button>" in page and ">Resume chat</button>" in page
    assert 'href="/exit"' in page and ">Quick exit</a>" in page
    assert '<label for="nickname">' in page
    cookie = response.cookies.get("oc_visitor") or next(iter(visitor.client.session.cookie_jar))
    assert cookie is not None


async def test_session_cookie_is_httponly_strict_and_never_in_a_url(new_visitor: NewVisitor) -> None:
    visitor = await new_visitor()
    response = await visitor.client.get("/", allow_redirects=False)
    # A known session is not re-issued; a fresh client gets the cookie flags.
    fresh = await visitor.client.session.get(visitor.client.make_url("/"), cookies={})
    header = fresh.headers.get("Set-Cookie", "") or response.headers.get("Set-Cookie", "")
    if header:
        assert "HttpOnly" in header and "SameSite=Strict" in header and "Expires" not in header
    sid = next(c.value for c in visitor.client.session.cookie_jar if c.key == "oc_visitor")
    await start_chat(visitor)
    for path in ("/", "/chat", "/chat/messages", "/chat/compose"):
        _, page = await visitor.get(path)
        assert sid not in page


async def test_start_then_wait_in_line_with_an_estimate(new_visitor: NewVisitor, services: Services) -> None:
    first = await new_visitor()
    second = await new_visitor()
    await start_chat(first, "Mia")
    passphrase = await start_chat(second)
    assert re.fullmatch(r"\d{4}( \d{4}){4}", passphrase), passphrase
    response, page = await second.get("/chat/messages")
    assert response.status == 200
    assert "You are number 2 in line" in page and "about 16 minutes" in page
    assert response.headers["Refresh"].startswith("0; url=/chat/messages?v=")


async def test_passphrase_is_shown_only_once(new_visitor: NewVisitor) -> None:
    visitor = await new_visitor()
    passphrase = await start_chat(visitor)
    _, again = await visitor.get("/chat")
    assert passphrase not in again


async def test_first_message_while_waiting_reaches_the_counsellor(
        new_visitor: NewVisitor, new_staff: NewStaff, services: Services) -> None:
    visitor = await new_visitor()
    await start_chat(visitor, "Mia")
    await visitor.get("/chat/compose")
    response, _ = await visitor.post("/chat/send", {"text": "I need help"})
    assert response.status == 303 and response.headers["Location"] == "/chat/compose"
    staff = await new_staff("carla")
    _, board = await staff.get("/")
    assert "I need help" in board and "Mia" in board
    cid = only(services)
    await staff.post(f"/accept/{cid}")
    _, messages = await staff.get(f"/chat/{cid}/messages")
    assert "I need help" in messages


async def test_held_poll_answers_as_soon_as_a_message_arrives(services: Services,
                                                              open_chat: OpenChatFactory) -> None:
    chat = await open_chat()
    visitor, cid = chat.visitor, chat.cid
    response, _ = await visitor.get("/chat/messages")
    next_url = response.headers["Refresh"].split("url=", 1)[1].split("#")[0]

    held = asyncio.create_task(visitor.get(next_url))
    await asyncio.sleep(0.2)
    assert not held.done(), "the poll should be held while nothing changes"
    began = time.perf_counter()
    services.chat.post(cid, Author.STAFF, "Hello, I am Carla", sender="carla")
    response, page = await asyncio.wait_for(held, 2)
    assert time.perf_counter() - began < 1.0
    assert "Hello, I am Carla" in page and "Counsellor" in page
    assert "carla" not in page  # the counsellor's account name is not shown to visitors


async def test_held_poll_returns_after_the_hold_time_without_change(new_visitor: NewVisitor) -> None:
    visitor = await new_visitor()
    await start_chat(visitor)
    response, _ = await visitor.get("/chat/messages")
    next_url = response.headers["Refresh"].split("url=", 1)[1].split("#")[0]
    began = time.perf_counter()
    response, _ = await visitor.get(next_url)
    assert response.status == 200 and 1.5 < time.perf_counter() - began < 5
    again = response.headers["Refresh"].split("url=", 1)[1].split("#")[0]
    # Same stamp, but never the URL on screen: a refresh to it would be a mere jump to
    # '#latest' and the frame would stop asking.
    assert again != next_url
    assert again.split("&p=")[0] == next_url.split("&p=")[0]
    _, page = await visitor.get(again)
    assert f'url={again.replace("&", "&amp;")}#latest' not in page  # the page's meta moves on too


async def test_pause_updates_gives_a_still_page(new_visitor: NewVisitor) -> None:
    visitor = await new_visitor()
    await start_chat(visitor)
    response, page = await visitor.get("/chat/messages?paused=1")
    assert "Refresh" not in response.headers and 'http-equiv="refresh"' not in page
    assert "Check for new messages" in page


async def test_stalled_notice_is_css_only(new_visitor: NewVisitor) -> None:
    visitor = await new_visitor()
    await start_chat(visitor)
    _, page = await visitor.get("/chat/messages")
    assert 'class="stalled"' in page
    _, css = await visitor.get("/static/style.css")
    assert "oc-stalled" in css and "60s forwards" in css  # the stalled setting: longer than any hold


async def test_a_refused_message_keeps_the_typed_text(new_visitor: NewVisitor, services: Services) -> None:
    visitor = await new_visitor()
    await start_chat(visitor)
    await visitor.get("/chat/compose")
    long_text = "word " * 500
    response, page = await visitor.post("/chat/send", {"text": long_text})
    assert response.status == 413
    assert "Your message is too long" in page and long_text.strip() in page
    conv = services.chat.get(only(services))
    assert conv.messages == []


async def test_leave_ends_the_chat_and_advises(services: Services, open_chat: OpenChatFactory) -> None:
    chat = await open_chat()
    visitor, staff, cid = chat.visitor, chat.staff, chat.cid
    services.chat.post(cid, Author.VISITOR, "private words")
    await visitor.get("/chat")
    response, _ = await visitor.post("/chat/leave")
    assert response.headers["Location"] == "/goodbye"
    _, advice = await visitor.get("/goodbye")
    assert "Close Tor Browser" in advice and "New Identity" in advice
    conv = services.chat.get(cid)
    assert conv.state is State.ENDED and conv.messages == []
    _, staff_view = await staff.get(f"/chat/{cid}/messages")
    assert "The visitor left the chat" in staff_view
    response, _ = await visitor.get("/chat")
    assert response.status == 303 and response.headers["Location"] == "/"


async def test_quick_exit_ends_the_chat_and_drops_the_session(new_visitor: NewVisitor,
                                                              services: Services) -> None:
    visitor = await new_visitor()
    await start_chat(visitor)
    cid = only(services)
    sessions_before = len(services.visitor_sessions)
    response, _ = await visitor.get("/exit")
    assert response.status == 303
    assert response.headers["Location"] == services.config.visitor.quick_exit_url
    assert "oc_visitor=\"\"" in response.headers["Set-Cookie"]
    assert services.chat.get(cid).end_reason is EndReason.QUICK_EXIT
    assert len(services.visitor_sessions) == sessions_before - 1


async def test_quick_exit_works_without_a_session(new_visitor: NewVisitor) -> None:
    visitor = await new_visitor()
    visitor.client.session.cookie_jar.clear()
    response, _ = await visitor.get("/exit")
    assert response.status == 303


async def test_resume_with_the_passphrase_from_another_browser(new_visitor: NewVisitor,
                                                               services: Services) -> None:
    first = await new_visitor()
    passphrase = await start_chat(first)
    services.chat.post(only(services), Author.VISITOR, "before the browser closed")
    second = await new_visitor()
    response, _ = await second.post("/resume", {"passphrase": passphrase.upper()})
    assert response.headers["Location"] == "/chat"
    _, page = await second.get("/chat/messages")
    assert "before the browser closed" in page


async def test_wrong_passphrases_are_throttled(new_visitor: NewVisitor) -> None:
    visitor = await new_visitor()
    statuses = []
    for _ in range(6):
        response, page = await visitor.post("/resume", {"passphrase": "baba-baba-baba-baba"})
        statuses.append(response.status)
    assert statuses == [404] * 5 + [429]
    assert "Too many tries" in page


async def test_csrf_missing_or_foreign_changes_nothing(new_visitor: NewVisitor, services: Services) -> None:
    visitor = await new_visitor()
    other = await new_visitor()
    response, page = await visitor.post("/start", csrf="")
    assert response.status == 403 and "Please try again" in page
    response, _ = await visitor.post("/start", csrf=other.csrf)
    assert response.status == 403
    assert len(services.chat) == 0


async def test_one_visitor_cannot_reach_anothers_chat(new_visitor: NewVisitor, services: Services) -> None:
    alice = await new_visitor()
    await start_chat(alice)
    services.chat.post(only(services), Author.VISITOR, "alice's secret")
    mallory = await new_visitor()
    cid = only(services)
    for path in ("/chat/messages", f"/chat/messages?cid={cid}", f"/chat/{cid}", "/chat"):
        _, page = await mallory.get(path)
        assert "alice's secret" not in page
    response, _ = await mallory.post("/chat/send", {"text": "injected", "cid": cid})
    assert services.chat.get(cid).messages[-1].text == "alice's secret"
    assert response.status == 404


async def test_staff_routes_do_not_exist_on_the_visitor_site(new_visitor: NewVisitor) -> None:
    visitor = await new_visitor()
    for path in ("/login", "/accept/x", "/mychats", "/chat/x/messages"):
        response, page = await visitor.get(path)
        assert response.status == 404 and "Page not found" in page


async def test_queue_full_gets_a_calm_page(new_visitor: NewVisitor, services: Services) -> None:
    for _ in range(services.config.limits.queue_length):
        services.chat.start("")
    visitor = await new_visitor()
    response, page = await visitor.post("/start")
    assert response.status == 503 and "All counsellors are busy" in page
    assert 'href="/exit"' in page


async def test_counsellor_ending_is_shown_to_the_visitor(services: Services, open_chat: OpenChatFactory) -> None:
    chat = await open_chat()
    visitor, staff, cid = chat.visitor, chat.staff, chat.cid
    _, page = await visitor.get("/chat/messages")
    assert "A counsellor has joined the chat" in page
    await staff.get(f"/chat/{cid}")
    response, _ = await staff.post(f"/chat/{cid}/end")
    assert response.status == 303
    response, page = await visitor.get("/chat/messages")
    assert "The counsellor has ended the chat" in page and "Refresh" not in response.headers
    _, compose = await visitor.get("/chat/compose")
    assert "<textarea" not in compose
