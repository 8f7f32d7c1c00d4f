"""Headers, friendly error pages, hostile bodies, and the privacy guard on both sites."""

from __future__ import annotations

import logging
from html.parser import HTMLParser

import pytest
from aiohttp import ClientResponse

from onionchat.chat import Author
from onionchat.web.app import Services
from tests.conftest import NewStaff, NewVisitor, only, start_chat


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


async def test_every_visitor_route_is_safe(new_visitor: NewVisitor, new_staff: NewStaff,
                                           services: Services) -> None:
    visitor = await new_visitor()
    checked = 0
    for path in ("/", "/safety", "/goodbye", "/nope", "/static/style.css"):
        assert_safe(*await visitor.get(path))
        checked += 1
    assert_safe(*await visitor.post("/start", {"nickname": "<script>alert(1)</script>"}))
    for path in ("/chat", "/chat/messages", "/chat/messages?paused=1", "/chat/compose"):
        assert_safe(*await visitor.get(path))
        checked += 1
    staff = await new_staff("carla")
    cid = only(services)
    await staff.post(f"/accept/{cid}")
    services.chat.post(cid, Author.STAFF, '<img src=x onerror="alert(1)">', sender="carla")
    services.chat.post(cid, Author.VISITOR, "<script>alert('x')</script>")
    response, page = await visitor.get("/chat/messages")
    assert_safe(response, page)
    assert "&lt;img src=x onerror=" in page
    assert_safe(*await visitor.post("/chat/send", {"text": "hi"}))
    assert_safe(*await visitor.post("/chat/send", csrf=""))
    assert_safe(*await visitor.post("/resume", {"passphrase": "<b>"}))
    assert_safe(*await visitor.post("/chat/leave"))
    assert_safe(*await visitor.get("/exit"))
    assert checked == 9


async def test_every_staff_route_is_safe(new_visitor: NewVisitor, new_staff: NewStaff,
                                         services: Services) -> None:
    await start_chat(await new_visitor(), '"><script>alert(1)</script>')
    cid = only(services)
    services.chat.post(cid, Author.VISITOR, "<iframe src=//evil>")
    staff = await new_staff("carla")
    for path in ("/", "/login", "/nope"):
        assert_safe(*await staff.get(path))
    assert_safe(*await staff.post(f"/accept/{cid}"))
    for path in (f"/chat/{cid}", f"/chat/{cid}/messages", f"/chat/{cid}/compose", "/mychats"):
        assert_safe(*await staff.get(path))
    assert_safe(*await staff.post(f"/chat/{cid}/send", {"text": "<svg onload=alert(1)>"}))
    assert_safe(*await staff.post(f"/chat/{cid}/end"))
    assert_safe(*await staff.post("/logout"))


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
