"""Resuming a chat in another browser: the counsellor is told, the old browser lets go, a new passphrase."""

from __future__ import annotations

import asyncio
import re

from onionchat.chat import Author, State
from onionchat.web.app import Services
from tests.conftest import NewVisitor, OpenChatFactory, Site

MOVED = "This chat is now open somewhere else"
RETURNED = "The visitor returned (resumed in another browser)."


def shown_passphrase(page: str) -> str:
    match = re.search(r'class="words">([^<]+)<', page)
    assert match, "no passphrase on the page"
    return match.group(1)


async def resume(visitor: Site, passphrase: str) -> int:
    response, _ = await visitor.post("/resume", {"passphrase": passphrase})
    return response.status


async def test_resume_moves_the_chat_and_everyone_knows(open_chat: OpenChatFactory, new_visitor: NewVisitor,
                                                        services: Services) -> None:
    chat = await open_chat()
    services.chat.post(chat.cid, Author.VISITOR, "my first words")
    services.chat.post(chat.cid, Author.STAFF, "a reply", sender="carla")
    second = await new_visitor()
    # Forgiving: dashes for spaces, spaces around.
    assert await resume(second, "  " + chat.passphrase.replace(" ", "-") + " ") == 303
    _, page = await second.get("/chat")
    fresh = shown_passphrase(page)
    assert fresh != chat.passphrase and "Your new return code" in page and "no longer works" in page
    _, frame = await second.get("/chat/messages")
    assert "my first words" in frame and "a reply" in frame and "You came back to this chat." in frame
    _, again = await second.get("/chat")
    assert 'class="words"' not in again  # shown once

    # The counsellor sees that the visitor returned.
    _, staff_frame = await chat.staff.get(f"/chat/{chat.cid}/messages")
    assert RETURNED in staff_frame

    # The first browser lets go: every page says so, none shows the chat, nothing it does reaches it.
    first = chat.visitor
    for path in ("/chat", "/chat/messages", "/chat/compose"):
        response, page = await first.get(path)
        assert response.status == 200 and MOVED in page and "my first words" not in page, path
        assert "a reply" not in page and "Refresh" not in response.headers, path
    response, page = await first.post("/chat/send", {"text": "from the old browser"})
    assert MOVED in page
    await first.post("/chat/leave")
    await first.get("/exit")
    conv = services.chat.get(chat.cid)
    assert conv.state is State.OPEN and all(m.text != "from the old browser" for m in conv.messages)

    # The old passphrase is spent; the new one works, as forgivingly, and moves the chat again.
    third = await new_visitor()
    assert await resume(third, chat.passphrase) == 404
    assert await resume(third, fresh.replace(" ", "")) == 303
    _, page = await second.get("/chat/messages")
    assert MOVED in page and "my first words" not in page


async def test_a_held_frame_of_the_old_browser_lets_go_at_once(open_chat: OpenChatFactory, new_visitor: NewVisitor,
                                                               services: Services) -> None:
    chat = await open_chat()
    services.chat.post(chat.cid, Author.VISITOR, "said before")
    response, _ = await chat.visitor.get("/chat/messages")
    next_url = response.headers["Refresh"].split("url=", 1)[1].split("#")[0]
    held = asyncio.create_task(chat.visitor.get(next_url))
    await asyncio.sleep(0.1)
    assert not held.done()  # held: nothing changed yet
    second = await new_visitor()
    assert await resume(second, chat.passphrase) == 303
    async with asyncio.timeout(1.5):  # answered by the change, well before the hold time (2 s)
        response, page = await held
    assert MOVED in page and "said before" not in page and "Refresh" not in response.headers


async def test_blocking_after_a_resume_reaches_the_new_browser(open_chat: OpenChatFactory, new_visitor: NewVisitor,
                                                               services: Services) -> None:
    chat = await open_chat()
    second = await new_visitor()
    assert await resume(second, chat.passphrase) == 303
    await chat.staff.get(f"/chat/{chat.cid}")
    response, _ = await chat.staff.post(f"/chat/{chat.cid}/block")
    assert response.status == 303
    await second.get("/")
    response, page = await second.post("/start", {"nickname": "again"})
    assert response.status == 403 and "not available" in page
