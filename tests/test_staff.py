"""The staff site: login with throttling, the dashboard, accepting, several chats, ending."""

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
    for path in ("/", "/chat/abc", "/chat/abc/messages", "/mychats"):
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
    _, board = await site.get("/")
    assert site.csrf != old_csrf and "Dashboard" in board


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


async def test_dashboard_title_counts_the_waiting(new_visitor: NewVisitor, new_staff: NewStaff) -> None:
    staff = await new_staff("carla")
    _, board = await staff.get("/")
    assert "<title>onionchat</title>" in board and "Nobody is waiting" in board
    for nickname in ("Mia", "<i>Ana</i>"):
        await start_chat(await new_visitor(), nickname)
    _, board = await staff.get("/")
    assert "<title>(2) onionchat</title>" in board
    assert "Mia" in board and "&lt;i&gt;Ana&lt;/i&gt;" in board and "<i>Ana" not in board
    assert board.count(">Accept</button>") == 2


async def test_dashboard_poll_wakes_when_a_visitor_arrives(new_visitor: NewVisitor, new_staff: NewStaff) -> None:
    import asyncio

    staff = await new_staff("carla")
    response, _ = await staff.get("/")
    next_url = response.headers["Refresh"].split("url=", 1)[1].split("#")[0]
    held = asyncio.create_task(staff.get(next_url))
    await asyncio.sleep(0.2)
    assert not held.done()
    began = time.perf_counter()
    await start_chat(await new_visitor(), "Mia")
    _, board = await asyncio.wait_for(held, 2)
    assert time.perf_counter() - began < 1 and "(1) onionchat" in board


async def test_accept_chat_and_end(new_visitor: NewVisitor, new_staff: NewStaff, services: Services) -> None:
    visitor = await new_visitor()
    await start_chat(visitor, "Mia")
    cid = only(services)
    staff = await new_staff("carla")
    response, _ = await staff.post(f"/accept/{cid}")
    assert response.headers["Location"] == f"/chat/{cid}"
    _, page = await staff.get(f"/chat/{cid}")
    assert ">End chat</button>" in page and f"/chat/{cid}/messages" in page
    await staff.get(f"/chat/{cid}/compose")
    response, _ = await staff.post(f"/chat/{cid}/send", {"text": "Hello Mia"})
    assert response.headers["Location"] == f"/chat/{cid}/compose"
    _, seen = await visitor.get("/chat/messages")
    assert "Hello Mia" in seen
    await staff.get(f"/chat/{cid}")
    await staff.post(f"/chat/{cid}/end")
    assert services.chat.get(cid).state is State.ENDED


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


async def test_several_chats_at_once_with_new_message_marks(
        new_visitor: NewVisitor, new_staff: NewStaff, services: Services) -> None:
    await start_chat(await new_visitor(), "One")
    await start_chat(await new_visitor(), "Two")
    first, second = (c.id for c in services.chat.queue())
    staff = await new_staff("carla")
    await staff.post(f"/accept/{first}")
    await staff.post(f"/accept/{second}")
    await staff.get(f"/chat/{first}/messages")
    await staff.get(f"/chat/{second}/messages")
    services.chat.post(second, Author.VISITOR, "are you there?")
    _, chats = await staff.get(f"/mychats?current={first}")
    assert f'href="/chat/{first}"' in chats and f'href="/chat/{second}"' in chats
    assert chats.count(">new</strong>") == 1
    _, board = await staff.get("/")
    assert "new message" in board


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
