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


async def test_start_then_wait_in_line_with_an_estimate(new_visitor: NewVisitor, new_staff: NewStaff,
                                                       services: Services) -> None:
    await new_staff("carla")  # one counsellor available: the estimate is theirs to keep
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
    _, board = await staff.get("/board")
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
    # Same stamp, but never the URL on screen: a refresh to it could be a mere jump within the
    # page (with a fragment) and the frame would stop asking.
    assert again != next_url
    assert again.split("&p=")[0] == next_url.split("&p=")[0]
    _, page = await visitor.get(again)
    meta = re.search(r'http-equiv="refresh" content="0; url=([^"]+)"', page)
    assert meta is not None and meta.group(1).replace("&amp;", "&") != again  # the page's meta moves on too


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
    for path in ("/login", "/accept/x", "/board", "/chat/x/messages"):
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


async def test_the_messages_frame_keeps_its_newest_line_in_view_without_a_fragment(
        new_visitor: NewVisitor) -> None:
    """A '#latest' jump made Chromium scroll the whole page (Quick exit went off screen): none is asked for."""
    visitor = await new_visitor()
    await start_chat(visitor)
    _, chat_page = await visitor.get("/chat")
    assert 'src="/chat/messages"' in chat_page
    response, page = await visitor.get("/chat/messages")
    assert "#" not in response.headers["Refresh"] and 'id="latest"' not in page
    assert 'class="log-scroll"' in page  # the column-reverse scroller (style.css) starts at its end


async def test_danger_advice_with_the_number_before_during_and_after_a_chat(
        new_visitor: NewVisitor, new_staff: NewStaff, services: Services) -> None:
    number = 'class="danger-number" dir="ltr">112</strong>'
    nobody = await new_visitor()
    _, landing = await nobody.get("/")
    assert 'href="/danger"' in landing and "Call the emergency number 112" in landing  # every page's foot
    _, page = await nobody.get("/danger")
    assert number in page and 'class="quick-exit"' in page and "Back to the start page" in page
    assert "danger" not in page.split("<title>")[1].split("</title>")[0].lower()  # a neutral tab title

    visitor = await new_visitor()
    await start_chat(visitor, "Ines")
    _, chat_page = await visitor.get("/chat")
    assert re.search(r'<form method="post" action="/chat/urgent" target="messages">', chat_page)
    await visitor.get("/chat/compose")  # the press counts once she has written (tests/test_workflow.py)
    assert (await visitor.post("/chat/send", {"text": "he is here"}))[0].status == 303
    for _ in range(2):  # a second press changes nothing more
        response, _ = await visitor.post("/chat/urgent")
        assert response.headers["Location"] == "/danger?frame=1"
    _, advice = await visitor.get("/danger?frame=1")
    assert number in advice and "front of the line" in advice and 'href="/chat/messages"' in advice
    assert 'class="quick-exit"' not in advice  # the page around the frame has it
    conv = services.chat.get(only(services))
    assert conv.urgent and [m.event for m in conv.messages if m.event] == ["urgent"]
    carla = await new_staff("carla")
    await carla.post(f"/accept/{conv.id}")
    _, staff_view = await carla.get(f"/chat/{conv.id}/messages")
    assert "The visitor pressed “I am in danger now” and was shown the emergency number." in staff_view
    _, frame = await visitor.get("/chat/messages")
    assert "You pressed “I am in danger now”. The counsellor has been told." in frame
    _, advice = await visitor.get("/danger?frame=1")
    assert "Your counsellor has been told." in advice and "front of the line" not in advice

    await carla.post(f"/chat/{conv.id}/end")
    response, _ = await visitor.post("/chat/urgent")  # after the end: still the advice, not an error
    assert response.status == 303 and response.headers["Location"] == "/danger?frame=1"
    _, advice = await visitor.get("/danger?frame=1")
    assert number in advice and "This chat has ended." in advice and 'href="/" target="_top"' in advice


async def test_leave_and_delete_are_a_second_step(new_visitor: NewVisitor) -> None:
    visitor = await new_visitor()
    await start_chat(visitor)
    _, page = await visitor.get("/chat")
    for first, action, confirm in (("Leave chat", "/chat/leave", "Yes, leave the chat"),
                                   ("Delete this conversation now", "/chat/delete", "Yes, delete it now")):
        step = re.search(rf'<details class="step">\s*<summary>{first}</summary>\s*<form method="post" '
                         rf'action="{action}">.*?<button type="submit" class="danger">{confirm}</button>', page, re.S)
        assert step, first
    assert page.count("<details") == 3 and "<details open" not in page  # Leave chat, More, Delete: all closed


async def test_a_message_sent_after_the_end_comes_back_to_the_visitor(
        services: Services, open_chat: OpenChatFactory) -> None:
    chat = await open_chat()
    await chat.visitor.get("/chat/compose")
    await chat.staff.post(f"/chat/{chat.cid}/end")
    draft = "They took my <passport> & I"
    response, page = await chat.visitor.post("/chat/send", {"text": draft})
    assert response.status == 409
    assert "Your message was not sent:" in page
    assert 'readonly dir="auto">They took my &lt;passport&gt; &amp; I</textarea>' in page
    assert services.chat.get(chat.cid).messages == []  # shown back, never stored


async def test_arabic_visitors_see_their_return_code_in_both_kinds_of_digits(new_visitor: NewVisitor) -> None:
    visitor = await new_visitor()
    await visitor.get("/lang/ar")
    await visitor.post("/start", {})
    _, page = await visitor.get("/chat")
    digits = re.search(r'class="words">([^<]+)<', page)
    native = re.search(r'class="words-native">([^<]+)<', page)
    assert digits and native
    arabic = digits.group(1).translate(str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩"))
    assert native.group(1) == arabic
    other = await new_visitor()
    response, _ = await other.post("/resume", {"passphrase": arabic})  # typed on an Arabic keyboard
    assert response.status == 303
