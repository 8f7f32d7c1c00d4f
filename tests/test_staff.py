"""The staff site: login with throttling, the board, accepting, several chats, ending."""

from __future__ import annotations

import time

import onionchat.staff
from onionchat.chat import Author, State
from onionchat.web.app import Services
from tests.conftest import PASSWORD, AiohttpClient, NewStaff, NewVisitor, Site, only, private_client, start_chat


async def staff_site(aiohttp_client: AiohttpClient, services: Services) -> Site:
    site = Site(await private_client(aiohttp_client, onionchat.staff.create_app(services)))
    await site.get("/login")
    return site


async def test_login_page_has_labelled_fields(aiohttp_client: AiohttpClient, services: Services) -> None:
    site = await staff_site(aiohttp_client, services)
    _, page = await site.get("/login")
    assert '<label for="username">Username</label>' in page
    assert '<label for="password">Password</label>' in page
    assert ">Log in</button>" in page


async def test_pages_need_a_login(aiohttp_client: AiohttpClient, services: Services) -> None:
    site = await staff_site(aiohttp_client, services)
    for path in ("/", "/status", "/board", "/pane/1", "/alerts", "/chat/abc", "/chat/abc/messages"):
        response, _ = await site.get(path)
        assert response.status == 303 and response.headers["Location"] == "/login"


async def test_login_regenerates_the_session(aiohttp_client: AiohttpClient, services: Services) -> None:
    site = await staff_site(aiohttp_client, services)
    before = next(c.value for c in site.client.session.cookie_jar if c.key == "oc_staff")
    old_csrf = site.csrf
    response, _ = await site.post("/login", {"username": "carla", "password": PASSWORD})
    assert response.status == 303 and response.headers["Location"] == "/"
    after = next(c.value for c in site.client.session.cookie_jar if c.key == "oc_staff")
    assert after != before
    assert services.staff_sessions.get(before) is None  # a planted id is worthless after login
    _, workspace = await site.get("/")
    assert site.csrf != old_csrf and 'src="/board"' in workspace


async def test_failed_logins_are_throttled_per_account(aiohttp_client: AiohttpClient,
                                                       services: Services) -> None:
    site = await staff_site(aiohttp_client, services)
    statuses = []
    for _ in range(services.config.staff.login_attempts):
        response, page = await site.post("/login", {"username": "carla", "password": "wrong password!!"})
        statuses.append(response.status)
    assert statuses == [403] * services.config.staff.login_attempts and "username or password is wrong" in page
    response, page = await site.post("/login", {"username": "carla", "password": PASSWORD})
    assert response.status == 429 and "Too many failed logins" in page
    # Another account is not affected.
    response, _ = await site.post("/login", {"username": "dirk", "password": PASSWORD})
    assert response.status == 303


async def test_board_and_alerts_count_the_waiting(new_visitor: NewVisitor, new_staff: NewStaff) -> None:
    staff = await new_staff("carla")
    _, board = await staff.get("/board")
    _, alerts = await staff.get("/alerts")
    assert "Nobody is waiting" in board and "<title>onionchat</title>" in alerts
    for nickname in ("Mia", "<i>Ana</i>"):
        await start_chat(await new_visitor(), nickname)
    _, board = await staff.get("/board")
    _, alerts = await staff.get("/alerts")
    assert "<title>(2) onionchat</title>" in alerts
    assert "Mia" in board and "&lt;i&gt;Ana&lt;/i&gt;" in board and "<i>Ana" not in board
    assert board.count(">Accept</button>") == 2


async def test_board_poll_wakes_when_a_visitor_arrives(new_visitor: NewVisitor, new_staff: NewStaff) -> None:
    import asyncio

    staff = await new_staff("carla")
    response, _ = await staff.get("/board")
    next_url = response.headers["Refresh"].split("url=", 1)[1].split("#")[0]
    held = asyncio.create_task(staff.get(next_url))
    await asyncio.sleep(0.2)
    assert not held.done()
    began = time.perf_counter()
    await start_chat(await new_visitor(), "Mia")
    _, board = await asyncio.wait_for(held, 2)
    assert time.perf_counter() - began < 1 and "Waiting (1)" in board and "Mia" in board


async def test_accept_chat_and_end(new_visitor: NewVisitor, new_staff: NewStaff, services: Services) -> None:
    visitor = await new_visitor()
    await start_chat(visitor, "Mia")
    cid = only(services)
    staff = await new_staff("carla")
    response, _ = await staff.post(f"/accept/{cid}", {"pane": "1"})
    assert response.headers["Location"] == "/pane/1"
    _, pane = await staff.get("/pane/1")
    # Ending takes a second step: the button is inside a <details> that says what happens.
    assert "<summary>End chat</summary>" in pane and ">Yes, end the chat</button>" in pane
    assert f'src="/chat/{cid}/messages?pane=1#latest"' in pane and 'name="msgs-1"' in pane
    await staff.get(f"/chat/{cid}/compose")
    response, _ = await staff.post(f"/chat/{cid}/send", {"text": "Hello Mia"})
    assert response.headers["Location"] == f"/chat/{cid}/compose"
    _, seen = await visitor.get("/chat/messages")
    assert "Hello Mia" in seen
    await staff.get("/pane/1")
    response, _ = await staff.post(f"/chat/{cid}/end", {"pane": "1"})
    assert response.headers["Location"] == f"/wrapup/{cid}?pane=1"  # the wrap-up in the same pane
    assert services.chat.get(cid).state is State.ENDED
    response, wrapup = await staff.get(f"/wrapup/{cid}?pane=1")
    assert 'class="bar staff"' not in wrapup and 'name="pane" value="1"' in wrapup  # no header inside a pane
    response, _ = await staff.post(f"/wrapup/{cid}", {"action": "skip", "pane": "1"})
    assert response.headers["Location"] == "/pane/1"
    _, pane = await staff.get("/pane/1")
    assert "Pane 1 is free" in pane


async def test_a_second_counsellor_cannot_take_or_read_a_taken_chat(
        new_visitor: NewVisitor, new_staff: NewStaff, services: Services) -> None:
    await start_chat(await new_visitor())
    cid = only(services)
    services.chat.post(cid, Author.VISITOR, "for carla only")
    carla = await new_staff("carla")
    dirk = await new_staff("dirk")
    await carla.post(f"/accept/{cid}")
    response, page = await dirk.post(f"/accept/{cid}")
    assert response.status == 409 and "Already taken" in page
    for path in (f"/chat/{cid}", f"/chat/{cid}/messages", f"/chat/{cid}/compose"):
        response, page = await dirk.get(path)
        assert response.status == 403 and "for carla only" not in page
    response, _ = await dirk.post(f"/chat/{cid}/send", {"text": "x"})
    assert response.status == 403


async def test_several_chats_at_once_each_in_its_pane_with_new_message_marks(
        new_visitor: NewVisitor, new_staff: NewStaff, services: Services) -> None:
    for nickname in ("One", "Two", "Three"):
        await start_chat(await new_visitor(), nickname)
    first, second, third = (c.id for c in services.chat.queue())
    staff = await new_staff("carla")
    for cid, pane in ((first, "1"), (second, "2"), (third, "3")):
        response, _ = await staff.post(f"/accept/{cid}", {"pane": pane})
        assert response.headers["Location"] == f"/pane/{pane}"
    for pane, nickname in (("1", "One"), ("2", "Two"), ("3", "Three")):
        _, page = await staff.get(f"/pane/{pane}")
        assert f"Chat with {nickname}" in page
    services.chat.post(second, Author.VISITOR, "are you there?")
    _, board = await staff.get("/board")
    assert board.count(">new message</strong>") == 1
    # The board's links to open chats only scroll the workspace: they never reload a pane.
    for pane in ("1", "2", "3"):
        assert f'href="/#pane-{pane}" target="_top"' in board
    await staff.post(f"/chat/{second}/send", {"text": "yes"})
    _, board = await staff.get("/board")
    assert ">new message</strong>" not in board  # answered


async def test_chat_limit_per_counsellor(new_visitor: NewVisitor, new_staff: NewStaff,
                                         services: Services) -> None:
    staff = await new_staff("carla")
    for _ in range(services.config.staff.max_chats + 1):
        await start_chat(await new_visitor())
    ids = [c.id for c in services.chat.queue()]
    for cid in ids[:-1]:
        response, _ = await staff.post(f"/accept/{cid}")
        assert response.status == 303
    response, page = await staff.post(f"/accept/{ids[-1]}")
    assert response.status == 409 and "as many chats as allowed" in page
    _, board = await staff.get("/board")
    assert "You hold as many chats as allowed." in board and board.count(" disabled>") == 2  # next, and the row


async def test_logout_and_removed_accounts_lose_access(new_staff: NewStaff, services: Services) -> None:
    staff = await new_staff("carla")
    response, _ = await staff.post("/logout")
    assert response.headers["Location"] == "/login"
    response, _ = await staff.get("/")
    assert response.headers["Location"] == "/login"
    dirk = await new_staff("dirk")
    services.accounts.remove("dirk")
    response, _ = await dirk.get("/")
    assert response.status == 303 and response.headers["Location"] == "/login"


async def test_idle_staff_sessions_expire(new_staff: NewStaff, services: Services) -> None:
    staff = await new_staff("carla")
    for session in list(services.staff_sessions._sessions.values()):
        session.last_action -= services.config.staff.idle_minutes * 60 + 1
    response, _ = await staff.get("/")
    assert response.headers["Location"] == "/login"


async def test_visitor_routes_do_not_exist_on_the_staff_site(new_staff: NewStaff) -> None:
    staff = await new_staff("carla")
    for path in ("/start", "/exit", "/chat/messages", "/goodbye"):
        response, _ = await staff.get(path)
        assert response.status in (404, 405)
