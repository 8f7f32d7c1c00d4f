"""Headers, friendly error pages, hostile bodies, and the privacy guard on both sites."""

from __future__ import annotations

import logging
import re
from html.parser import HTMLParser

import pytest
from aiohttp import ClientResponse, web

import onionchat.staff
import onionchat.visitor
from onionchat.accounts import Role
from onionchat.chat import Author, NoteKind
from onionchat.errors import ErrorCode
from onionchat.web.app import Services
from onionchat.web.guard import ERRORS
from tests.conftest import PASSWORD, NewStaff, NewVisitor, OpenChatFactory, Site, only, start_chat


class ScriptFinder(HTMLParser):
    """Collects every way a page could run script: elements, handlers, javascript: URLs."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "object", "embed", "svg", "math"):
            self.found.append(f"<{tag}>")
        for name, value in attrs:
            if name.startswith("on"):
                self.found.append(f"{tag}[{name}]")
            if value and value.strip().lower().startswith(("javascript:", "data:text/html")):
                self.found.append(f"{tag}[{name}={value}]")


def scripts_in(body: str) -> list[str]:
    finder = ScriptFinder()
    finder.feed(body)
    finder.close()
    return finder.found


def assert_safe(response: ClientResponse, body: str) -> None:
    headers = response.headers
    csp = headers["Content-Security-Policy"]
    assert csp.startswith("default-src 'none'")
    assert "script" not in csp, "the CSP must not name any script source"
    assert "frame-ancestors 'self'" in csp and "frame-src 'self'" in csp
    assert headers["Referrer-Policy"] == "no-referrer"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["X-Frame-Options"] == "SAMEORIGIN"
    assert headers["Cross-Origin-Opener-Policy"] == "same-origin"
    assert headers["Cross-Origin-Resource-Policy"] == "same-origin"
    assert "camera=()" in headers["Permissions-Policy"]
    assert headers["Server"] == "onionchat"
    if response.content_type == "text/html":
        assert headers["Cache-Control"] == "no-store"
    assert "<script" not in body.lower()
    assert scripts_in(body) == [], "no script of any kind in a response"


HOSTILE = '"><script>alert(1)</script><svg onload=alert(2)>'
# Every form field any of our forms has, each filled with hostile text.
HOSTILE_FORM = dict.fromkeys((
    "action", "available", "back", "canned", "chats", "code", "confirm", "contact", "current_password", "kind",
    "lang", "max_chats", "name", "new_password", "new_password_again", "nickname", "note", "pane", "passphrase",
    "password", "password_again", "reason", "role", "text", "title", "to", "username"), HOSTILE)
# Routes that end something are asked last, in this order; the others GETs first, then POSTs.
LAST = ("/chat/{cid}/block", "/chat/{cid}/end", "/admin/staff/{name}/remove", "/chat/leave", "/chat/delete",
        "/logout", "/exit")


def ordered_routes(app: web.Application) -> list[tuple[str, str]]:
    """(method, path template) of every route of ``app``, from its router, in a safe order."""
    routes = {(r.method, r.resource.canonical) for r in app.router.routes()
              if r.method != "HEAD" and r.resource is not None}
    return sorted(routes, key=lambda mr: (mr[1] in LAST, LAST.index(mr[1]) if mr[1] in LAST else 0,
                                          mr[0] != "GET", mr[1]))


async def ask_every_route(site: Site, app: web.Application, values: dict[str, str]) -> int:
    """Ask every route of ``app`` with hostile form values; every answer must be safe. Returns how many."""
    asked = 0
    for method, template in ordered_routes(app):
        path = re.sub(r"\{(\w+)\}", lambda m: values[m.group(1)], template)
        response, body = await (site.get(path) if method == "GET" else site.post(path, HOSTILE_FORM))
        assert response.status < 500, f"{method} {path}: {response.status}"
        assert_safe(response, body)
        asked += 1
    return asked


async def test_every_visitor_route_is_safe(new_visitor: NewVisitor, services: Services,
                                           open_chat: OpenChatFactory) -> None:
    chat = await open_chat(HOSTILE)
    services.chat.post(chat.cid, Author.STAFF, '<img src=x onerror="alert(1)">', sender="carla")
    services.chat.post(chat.cid, Author.VISITOR, HOSTILE)
    response, page = await chat.visitor.get("/chat/messages")
    assert_safe(response, page)
    assert "&lt;img src=x onerror=" in page
    app = onionchat.visitor.create_app(services)
    asked = await ask_every_route(chat.visitor, app, {"code": "ar"})
    assert asked == len(ordered_routes(app)) >= 15, "every visitor route, read from the router"
    # A visitor without a chat (and without a session) is answered safely too.
    assert await ask_every_route(await new_visitor(), app, {"code": "nl"}) == asked


async def test_every_staff_route_is_safe(new_visitor: NewVisitor, new_staff: NewStaff,
                                         services: Services) -> None:
    services.accounts.add("ada", PASSWORD, Role.ADMIN)  # an admin reaches every staff route
    await start_chat(await new_visitor(), HOSTILE)
    cid = only(services)
    services.chat.post(cid, Author.VISITOR, HOSTILE)
    reply = services.canned.add("en", "hostile", HOSTILE)
    ada = await new_staff("ada")
    assert (await ada.post(f"/accept/{cid}"))[0].status == 303
    services.chat.add_note(cid, NoteKind.NOTE, "ada", HOSTILE)
    app = onionchat.staff.create_app(services)
    asked = await ask_every_route(ada, app, {"cid": cid, "name": "carla", "rid": reply.id, "code": "nl", "n": "1"})
    assert asked == len(ordered_routes(app)) >= 50, "every staff route, read from the router"


async def test_friendly_error_pages(new_visitor: NewVisitor) -> None:
    visitor = await new_visitor()
    response, page = await visitor.get("/no/such/page")
    assert response.status == 404 and "Page not found" in page and "Quick exit" in page
    response = await visitor.client.put("/start")
    assert response.status == 405 and "cannot be used like that" in await response.text()
    response = await visitor.client.post("/start", data=b"x" * 100_000,
                                         headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert response.status == 413 and "too large" in await response.text()
    response = await visitor.client.post("/start", data=b"_csrf=\xff\xfe&nickname=\xc3(",
                                         headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert response.status in (400, 403) and "Traceback" not in await response.text()
    response = await visitor.client.post("/start", data=b"{}", headers={"Content-Type": "application/json"})
    assert response.status == 400


async def test_proxy_headers_and_user_agent_appear_nowhere(
        new_visitor: NewVisitor, services: Services, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    spoof = {"X-Forwarded-For": "203.0.113.77", "X-Real-IP": "198.51.100.88",
             "User-Agent": "UniqueAgentMarker/1.0"}
    visitor = await new_visitor()
    await visitor.get("/", headers=spoof)
    await visitor.post("/start", {"nickname": "n"}, headers=spoof)
    _, page = await visitor.get("/chat/messages", headers=spoof)
    await visitor.get("/nope", headers=spoof)
    for marker in spoof.values():
        assert marker not in page
        assert marker not in caplog.text
        assert marker not in repr(services.visitor_sessions._sessions)
        assert marker not in repr(list(services.chat))


async def test_multipart_with_a_file_is_refused(new_visitor: NewVisitor, services: Services) -> None:
    import aiohttp

    visitor = await new_visitor()
    form = aiohttp.FormData()
    form.add_field("_csrf", visitor.csrf)
    form.add_field("nickname", b"data", filename="photo.jpg", content_type="image/jpeg")
    response = await visitor.client.post("/start", data=form)
    assert response.status == 400
    assert len(services.chat) == 0


def test_every_refusal_code_has_its_page() -> None:
    assert set(ERRORS) == set(ErrorCode), "a new ErrorCode needs a friendly page in web/guard.ERRORS"
    for refusal in ERRORS.values():
        assert 400 <= refusal.status < 600 and refusal.title and refusal.text
