"""Authentication and authorization: fixation, CSRF on every POST route, cross-visitor reads, expiry."""

from __future__ import annotations

import re

from aiohttp import web

import onionchat.staff
import onionchat.visitor
from onionchat.accounts import Role
from onionchat.chat import Author, NoteKind
from onionchat.web.app import Services
from tests.conftest import PASSWORD, AiohttpClient, NewStaff, NewVisitor, Site, only, private_client, start_chat

CSRF_TEXT = "This form was too old or came from somewhere else"
# POST routes that work without a form token on purpose: Quick exit must work in one tap from
# any page (and the SameSite=Strict cookie keeps other sites from triggering it).
NO_TOKEN_BY_DESIGN = {("visitor", "/exit")}


def post_routes(app: web.Application) -> list[str]:
    """The path template of every POST route."""
    out = set()
    for route in app.router.routes():
        if route.method == "POST" and route.resource is not None:
            info = route.resource.get_info()
            out.add(str(info.get("formatter") or info.get("path")))
    return sorted(out)


def fill(template: str, values: dict[str, str]) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: values[m.group(1)], template)


def plant(site: Site, name: str, value: str) -> None:
    """Put a cookie in the browser as if someone with access to it had set it."""
    site.client.session.cookie_jar.clear()
    site.client.session.cookie_jar.update_cookies({name: value}, response_url=site.client.make_url("/"))


def cookie_of(site: Site, name: str) -> str:
    cookie = site.client.session.cookie_jar.filter_cookies(site.client.make_url("/")).get(name)
    return cookie.value if cookie is not None else ""


async def test_planted_visitor_cookie_is_not_kept_when_a_chat_starts(new_visitor: NewVisitor,
                                                                     services: Services) -> None:
    """An id known to someone else (planted in the browser) must not become the chat's session."""
    attacker = await new_visitor()
    planted = cookie_of(attacker, "oc_visitor")
    victim = await new_visitor()
    plant(victim, "oc_visitor", planted)
    await victim.get("/")
    assert victim.csrf == attacker.csrf, "the planted session is in use before the chat starts"
    await victim.post("/start", {"nickname": "victim"})
    await victim.get("/chat")
    services.chat.post(only(services), Author.VISITOR, "VICTIM-WORDS")
    assert cookie_of(victim, "oc_visitor") != planted, "the session id is renewed when a chat starts"
    _, frame = await attacker.get("/chat/messages")
    assert "VICTIM-WORDS" not in frame
    _, frame = await victim.get("/chat/messages")
    assert "VICTIM-WORDS" in frame


async def test_planted_visitor_cookie_is_not_kept_at_resume(new_visitor: NewVisitor, services: Services) -> None:
    owner = await new_visitor()
    passphrase = await start_chat(owner)
    services.chat.post(only(services), Author.VISITOR, "OWNER-WORDS")
    attacker = await new_visitor()
    planted = cookie_of(attacker, "oc_visitor")
    returning = await new_visitor()
    plant(returning, "oc_visitor", planted)
    await returning.get("/")
    assert returning.csrf == attacker.csrf
    response, _ = await returning.post("/resume", {"passphrase": passphrase})
    assert response.status == 303
    assert cookie_of(returning, "oc_visitor") != planted
    _, frame = await attacker.get("/chat/messages")
    assert "OWNER-WORDS" not in frame


async def test_unknown_cookies_are_never_adopted(new_visitor: NewVisitor, services: Services) -> None:
    visitor = await new_visitor()
    plant(visitor, "oc_visitor", "chosen-by-the-attacker")
    await visitor.get("/")
    assert cookie_of(visitor, "oc_visitor") != "chosen-by-the-attacker"
    assert services.visitor_sessions.get("chosen-by-the-attacker") is None


async def test_planted_staff_cookie_is_not_kept_at_login(aiohttp_client: AiohttpClient, services: Services) -> None:
    app = onionchat.staff.create_app(services)
    attacker = Site(await private_client(aiohttp_client, app))
    await attacker.get("/login")
    planted = cookie_of(attacker, "oc_staff")
    carla = Site(await private_client(aiohttp_client, app))
    plant(carla, "oc_staff", planted)
    await carla.get("/login")
    assert carla.csrf == attacker.csrf
    response, _ = await carla.post("/login", {"username": "carla", "password": PASSWORD})
    assert response.status == 303
    assert cookie_of(carla, "oc_staff") != planted
    response, _ = await attacker.get("/")
    assert response.status == 303 and response.headers["Location"] == "/login", "the planted id is not signed in"


async def test_every_post_route_refuses_a_missing_or_foreign_token(
        aiohttp_client: AiohttpClient, new_visitor: NewVisitor, services: Services) -> None:
    services.accounts.add("alex", PASSWORD, Role.ADMIN)
    visitor = await new_visitor()
    await start_chat(visitor)
    cid = only(services)
    staff_app = onionchat.staff.create_app(services)
    alex = Site(await private_client(aiohttp_client, staff_app))
    await alex.get("/login")
    assert (await alex.post("/login", {"username": "alex", "password": PASSWORD}))[0].status == 303
    await alex.get("/")
    assert (await alex.post(f"/accept/{cid}"))[0].status == 303  # the admin holds the chat: every route applies
    reply = services.canned.add("en", "Hello", "Hello, how can I help?")
    stranger = await new_visitor()
    before = (len(services.chat.get(cid).messages), len(services.chat.get(cid).notes),
              [(a.name, a.role, a.disabled) for a in services.accounts.all()], len(services.canned.all()))
    values = {"cid": cid, "name": "dirk", "rid": reply.id}
    checked = []
    visitor_app = onionchat.visitor.create_app(services)
    for site_name, site, app in (("visitor", visitor, visitor_app), ("staff", alex, staff_app)):
        for template in post_routes(app):
            if (site_name, template) in NO_TOKEN_BY_DESIGN or template.startswith("/login"):
                continue
            path = fill(template, values)
            for token in ("", stranger.csrf):
                response, page = await site.post(path, {"text": "x", "note": "x", "role": "admin"}, csrf=token)
                assert response.status == 403 and CSRF_TEXT in page, f"{site_name} POST {path} with token {token!r}"
            checked.append(f"{site_name} {template}")
    assert len(checked) >= 20, checked
    after = (len(services.chat.get(cid).messages), len(services.chat.get(cid).notes),
             [(a.name, a.role, a.disabled) for a in services.accounts.all()], len(services.canned.all()))
    assert after == before, "a refused form changed nothing"


async def test_login_form_needs_its_token(aiohttp_client: AiohttpClient, services: Services) -> None:
    site = Site(await private_client(aiohttp_client, onionchat.staff.create_app(services)))
    await site.get("/login")
    response, page = await site.post("/login", {"username": "carla", "password": PASSWORD}, csrf="")
    assert response.status == 403 and CSRF_TEXT in page


async def test_no_visitor_route_shows_another_visitors_chat(new_visitor: NewVisitor, new_staff: NewStaff,
                                                            services: Services) -> None:
    bob = await new_visitor()
    bob_passphrase = await start_chat(bob, "BobNick")
    bob_cid = only(services)
    staff = await new_staff("carla")
    await staff.post(f"/accept/{bob_cid}")
    services.chat.post(bob_cid, Author.VISITOR, "BOB-SECRET-TEXT")
    services.chat.add_note(bob_cid, NoteKind.NOTE, "carla", "BOB-NOTE")
    before = [m.text for m in services.chat.get(bob_cid).messages]
    alice = await new_visitor()
    await start_chat(alice, "Alice")
    app = onionchat.visitor.create_app(services)
    tried = 0
    for route in app.router.routes():
        if route.resource is None or route.method not in ("GET", "POST"):
            continue
        path = str(route.resource.get_info().get("path") or route.resource.get_info().get("formatter"))
        for query in ("", f"?cid={bob_cid}&conversation={bob_cid}&v=1"):
            if route.method == "GET":
                _, page = await alice.get(path + query)
            else:
                if path in ("/exit", "/chat/leave", "/chat/delete"):
                    continue  # these end Alice's own chat; tried below
                _, page = await alice.post(path + query, {"cid": bob_cid, "conversation": bob_cid,
                                                          "text": "from alice", "nickname": "x"})
            assert "BOB-SECRET-TEXT" not in page and "BobNick" not in page and "BOB-NOTE" not in page
            tried += 1
    for path in ("/chat/leave", "/chat/delete", "/exit"):
        await alice.post(path, {"cid": bob_cid})
    assert tried >= 20
    assert [m.text for m in services.chat.get(bob_cid).messages] == before, "Bob's chat is untouched"
    _, frame = await bob.get("/chat/messages")
    assert "BOB-SECRET-TEXT" in frame and bob_passphrase


async def test_an_expired_visitor_session_is_a_new_visitor(new_visitor: NewVisitor, services: Services) -> None:
    visitor = await new_visitor()
    await start_chat(visitor)
    old_csrf = visitor.csrf
    for session in list(services.visitor_sessions._sessions.values()):
        session.last_seen -= services.config.limits.idle_minutes * 60 + 1
    response, _ = await visitor.get("/chat")
    assert response.status == 303 and response.headers["Location"] == "/"
    response, page = await visitor.post("/chat/send", {"text": "late"}, csrf=old_csrf)
    assert response.status in (403, 404) and ("Please try again" in page or "has ended" in page)
    _, landing = await visitor.get("/")
    assert "Start chat" in landing
