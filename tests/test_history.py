"""Bounded frames: the live messages frames carry the latest messages only; the rest is a link away."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest

from onionchat.chat import Author, EndReason, NoteKind
from onionchat.config import Config
from onionchat.web.app import Services
from tests.conftest import NewStaff, NewVisitor, OpenChatFactory, Site

WINDOW = 5
LINE = re.compile(r"line (\d{3}) of the chat")
EARLIER = re.compile(r'<a href="(/chat/history\?before=\d+)">Earlier messages</a>')
LATER = re.compile(r'<a href="(/chat/history\?before=\d+)">Later messages</a>')


@pytest.fixture
def config(config: Config) -> Config:
    """The shared test config, with a frame of five messages (and room to write fast)."""
    return replace(config, poll=replace(config.poll, frame_messages=WINDOW),
                   limits=replace(config.limits, messages_per_minute=1000))


def say(services: Services, cid: str, first: int, last: int) -> None:
    """Messages ``first``..``last`` (three-digit numbers: every line has the same length)."""
    for n in range(first, last + 1):
        author = Author.VISITOR if n % 2 else Author.STAFF
        services.chat.post(cid, author, f"line {n:03d} of the chat", sender="" if n % 2 else "carla")


def lines(page: str) -> list[int]:
    return [int(n) for n in LINE.findall(page)]


async def test_the_visitors_frame_stays_the_same_size_as_the_chat_grows(services: Services,
                                                                        open_chat: OpenChatFactory) -> None:
    chat = await open_chat()
    say(services, chat.cid, 1, 20)
    response, at_20 = await chat.visitor.get("/chat/messages")
    assert lines(at_20) == list(range(16, 21)), "the latest five, in order"
    assert "A counsellor has joined" not in at_20
    assert EARLIER.search(at_20), "a plain link to the earlier messages"
    say(services, chat.cid, 21, 400)
    _, at_400 = await chat.visitor.get("/chat/messages")
    assert lines(at_400) == list(range(396, 401))
    # Only the stamp in the next URL differs (v=21 or v=401): one more digit, nothing else.
    assert len(at_400.encode()) - len(at_20.encode()) == 2 * len("1")
    assert "Cache-Control" in response.headers and response.headers["Cache-Control"] == "no-store"


async def test_the_visitor_pages_back_through_the_whole_chat(services: Services,
                                                             open_chat: OpenChatFactory) -> None:
    chat = await open_chat()
    say(services, chat.cid, 1, 12)
    _, frame = await chat.visitor.get("/chat/messages")
    seen = lines(frame)
    link = EARLIER.search(frame)
    pages = []
    while link:
        response, page = await chat.visitor.get(link.group(1))
        assert response.status == 200 and response.headers["Cache-Control"] == "no-store"
        assert "Refresh" not in response.headers and 'http-equiv="refresh"' not in page, "it does not update itself"
        assert 'href="/exit" target="_top"' in page and "Quick exit" in page
        assert 'href="/chat/messages"' in page, "the way back to the live messages"
        assert "<script" not in page
        assert len(lines(page)) <= WINDOW
        seen = lines(page) + seen
        pages.append(page)
        link = EARLIER.search(page)
    assert seen == list(range(1, 13)), "every message once, in order"
    assert "A counsellor has joined the chat." in pages[-1], "the first page starts at the start"
    later = LATER.search(pages[-1])  # from the first page forward again
    assert later
    _, page = await chat.visitor.get(later.group(1))
    assert lines(page) == [3, 4, 5, 6, 7]


async def test_the_history_page_keeps_the_visitors_language_and_refuses_strangers(
        services: Services, open_chat: OpenChatFactory, new_visitor: NewVisitor) -> None:
    chat = await open_chat()
    say(services, chat.cid, 1, 8)
    await chat.visitor.get("/lang/ar")
    _, page = await chat.visitor.get("/chat/history?before=6")  # message 1 is "a counsellor joined"
    assert '<html lang="ar" dir="rtl">' in page and lines(page) == [1, 2, 3, 4]
    for junk in ("-1", "x", "9" * 40, "0"):
        response, page = await chat.visitor.get(f"/chat/history?before={junk}")
        assert response.status == 200, junk
    stranger = await new_visitor()
    response, page = await stranger.get("/chat/history")
    assert response.status == 303 and response.headers["Location"] == "/chat/messages"
    assert "line 00" not in page


async def test_counsellors_see_the_latest_lines_and_can_read_everything(
        services: Services, open_chat: OpenChatFactory, new_staff: NewStaff) -> None:
    chat = await open_chat("Ana")
    say(services, chat.cid, 1, 10)
    services.chat.add_note(chat.cid, NoteKind.NOTE, "carla", "a note only staff see")
    _, frame = await chat.staff.get(f"/chat/{chat.cid}/messages")
    assert lines(frame) == [7, 8, 9, 10] and "a note only staff see" in frame
    link = re.search(r'href="(/chat/[^"/]+/history)#latest" target="_blank"', frame)
    assert link and "Read the whole conversation" in frame
    response, whole = await chat.staff.get(link.group(1))
    assert response.status == 200 and "Refresh" not in response.headers
    assert lines(whole) == list(range(1, 11)) and "a note only staff see" in whole
    assert "A counsellor has joined" not in whole and "The chat was accepted." in whole
    assert f'href="/chat/{chat.cid}"' in whole
    supervisor: Site = await new_staff("sam")
    response, watched = await supervisor.get(link.group(1))
    assert response.status == 200 and lines(watched) == list(range(1, 11))
    assert f'href="/supervise/{chat.cid}"' in watched
    _, frame = await supervisor.get(f"/supervise/{chat.cid}/messages")
    assert lines(frame) == [7, 8, 9, 10] and "Read the whole conversation" in frame
    other = await new_staff("dirk")
    response, page = await other.get(link.group(1))
    assert response.status == 403 and "line 00" not in page


async def test_every_frames_next_url_carries_its_stamp_as_it_is(
        services: Services, open_chat: OpenChatFactory, new_visitor: NewVisitor, new_staff: NewStaff) -> None:
    """serve_frame puts stamps into URLs without quoting: each must be digits, dots and letters."""
    waiting = await new_visitor()
    await waiting.post("/start", {"nickname": "w"})
    chat = await open_chat("Ana")
    gone = await new_visitor()
    sam = await new_staff("sam")
    frames = [(waiting, "/chat/messages"), (chat.visitor, "/chat/messages"), (gone, "/chat/messages"),
              (chat.staff, "/board"), (chat.staff, f"/chat/{chat.cid}/messages"),
              (chat.staff, f"/chat/{chat.cid}/messages?pane=1"),
              (sam, "/supervise"), (sam, f"/supervise/{chat.cid}/messages")]
    live = 0
    for site, path in frames:
        response, page = await site.get(path)
        assert response.status == 200, path
        refresh = response.headers.get("Refresh")
        if refresh is None:
            continue
        live += 1
        assert re.fullmatch(r"\d+; url=/[\w/?=&-]*[?&]v=[A-Za-z0-9.]+&p=[01](#latest)?", refresh), (path, refresh)
        if site in (waiting, chat.visitor, gone):  # staff frames carry the header alone (web/poll.py)
            assert refresh.split("url=", 1)[1].replace("&", "&amp;") in page, "the meta refresh says the same"
        else:
            assert 'http-equiv="refresh"' not in page, path
    assert live == len(frames) - 1, "all but the frame of a visitor without a chat refresh themselves"
    services.chat.end(chat.cid, EndReason.STAFF_ENDED)
    response, _ = await chat.visitor.get("/chat/messages")
    assert "Refresh" not in response.headers, "an ended chat's frame never changes again"
