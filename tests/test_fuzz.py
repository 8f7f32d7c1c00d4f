"""Hostile input: hypothesis drives every route of both sites; no 5xx, no crash, bystanders untouched.

Profiles: ONIONCHAT_FUZZ=ci (default, ~500 requests) or ONIONCHAT_FUZZ=full (10,000+ requests).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import secrets
import socket
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from yarl import URL

from onionchat.chat import Author, EndReason, NoteKind, State
from onionchat.config import Config
from onionchat.sessions import Session
from onionchat.web.app import Services
from onionchat.web.headers import SECURITY_HEADERS
from onionchat.web.server import PRIVATE_RUNNER, harden_protocol_errors
from tests.conftest import SITES, make_services
from tests.liveserver import live_server

PROFILE = os.environ.get("ONIONCHAT_FUZZ", "ci")
# Requests per site; the raw-socket test adds RAW more. ci: ~550 in all, full: ~11,000.
PER_SITE = {"ci": 250, "full": 5000}[PROFILE]
RAW = {"ci": 50, "full": 1000}[PROFILE]
BYSTANDER_TEXT = "bystander message that must survive the fuzzing"
FIELDS = ("_csrf", "text", "nickname", "passphrase", "username", "password", "note", "kind", "back", "to",
          "reason", "action", "canned", "available", "a[b][c]", "[[[]]]", "text[]", "")
QUERY_KEYS = ("v", "paused", "urgent", "current", "deleted", "cid", "_csrf", "lang", "q[]", "")
HEADER_NAMES = ("X-Forwarded-For", "X-Real-IP", "User-Agent", "Accept-Language", "Referer", "Origin", "Accept",
                "If-None-Match", "Range", "Forwarded", "X-Requested-With", "Accept-Encoding")
METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD")
CONTENT_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data", "multipart/form-data; boundary=x",
                 "application/json", "text/plain", "application/octet-stream", "text/html; charset=utf-7",
                 "application/x-www-form-urlencoded; charset=latin-1", "garbage/\t;;", ";;;", "")

# Text that hurts: control characters, lone surrogates, bidi marks, nested brackets, markup.
nasty_chars = st.characters(codec=None, exclude_categories=())
nasty_text = st.one_of(
    st.text(nasty_chars, max_size=60),
    st.sampled_from(["\x00", "\r\n\r\n", "\u202e", "\ud800", "[[[[[[[[]]]]]]]]", "{{7*7}}", "%s%n", "../" * 8,
                     "<script>alert(1)</script>", "a" * 3000, "\ufeff", "%ff%fe", "\\x00", "🙂" * 500]),
)
latin1_header = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"),
                        max_size=200)


def pct(text: str, safe: str = "") -> str:
    """Percent-encode, lone surrogates included (they become invalid UTF-8 on the wire: good)."""
    return quote(text.encode("utf-8", "surrogatepass"), safe=safe)


@dataclass(frozen=True, repr=False)
class Req:
    """One generated request, with symbolic references resolved against the world at send time."""

    method: str
    path: list[str | tuple[str, str]]  # literal segments or ("cid", choice)
    query: str
    cookie: str  # pool name, "garbage:<text>", "none", "both", "many"
    body_kind: str
    fields: list[tuple[str, str]]
    csrf: str  # valid, other, garbage, missing
    raw: bytes
    content_type: str
    headers: list[tuple[str, str]]

    def __repr__(self) -> str:
        """Short enough for a failure message: huge generated values are cut."""
        parts = [f"{k}={v!r:.200}" for k, v in vars(self).items()]
        return "Req(" + ", ".join(parts) + ")"


def route_templates(app: web.Application) -> list[tuple[str, str]]:
    """(method, path template) of every route the application serves."""
    out = []
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        template = info.get("formatter") or info.get("path") or "/"
        out.append((route.method, str(template)))
    return sorted(set(out))


def split_template(template: str) -> list[str | tuple[str, str]]:
    parts: list[str | tuple[str, str]] = []
    for piece in re.split(r"(\{[^}]+\})", template):
        if piece.startswith("{"):
            parts.append(("cid", ""))
        elif piece:
            parts.append(piece)
    return parts


@st.composite
def requests(draw: st.DrawFn, templates: list[tuple[str, str]]) -> Req:
    method, template = draw(st.sampled_from(templates))
    if draw(st.integers(0, 9)) == 0:
        template = "/" + "/".join(draw(st.lists(st.text(max_size=12), max_size=4)))
    if draw(st.integers(0, 4)) == 0:  # mostly the route's own method, so handlers run
        method = draw(st.sampled_from(METHODS))
    path: list[str | tuple[str, str]] = []
    for part in split_template(template):
        if isinstance(part, tuple):
            choice = draw(st.one_of(st.sampled_from(["bystander", "own", "other", "ended"]),
                                    nasty_text.map(lambda t: "text:" + t)))
            path.append(("cid", choice))
        else:
            path.append(part)
    if draw(st.integers(0, 7)) == 0:
        path.append(draw(st.sampled_from(["/", "//", "/..", "%00", "%2e%2e/", "%ff", "?", "#x", "/%0d%0a"])))
    pairs = draw(st.lists(st.tuples(st.one_of(st.sampled_from(QUERY_KEYS), nasty_text), nasty_text), max_size=4))
    query = "&".join(f"{pct(k, '[]')}={pct(v)}" for k, v in pairs)
    if draw(st.integers(0, 9)) == 0:
        query += draw(st.sampled_from(["&%ff%fe=%c3%28", "&&&", "=", "v=%00", "paused=1&paused=0"]))
    cookie = draw(st.one_of(st.sampled_from(["none", "visitor_plain", "visitor_waiting", "visitor_open",
                                             "dirk", "sam", "both", "many", "swapped", "other"]),
                            latin1_header.map(lambda t: "garbage:" + t)))
    body_kind = draw(st.sampled_from(["none", "form", "form", "multipart", "json", "raw", "huge", "bad_utf8"]))
    field_values = st.one_of(nasty_text, st.sampled_from(["note", "staff_line", "line", "compose", "queue",
                                                          "carla", "dirk", "insert", "send", "1"]))
    fields = draw(st.lists(st.tuples(st.one_of(st.sampled_from(FIELDS), nasty_text), field_values), max_size=6))
    csrf = draw(st.sampled_from(["valid", "valid", "other", "garbage", "missing"]))
    raw = draw(st.binary(max_size=300))
    content_type = draw(st.one_of(st.sampled_from(CONTENT_TYPES), latin1_header))
    headers = draw(st.lists(st.tuples(st.sampled_from(HEADER_NAMES), latin1_header), max_size=4))
    return Req(method, path, query, cookie, body_kind, fields, csrf, raw, content_type, headers)


@dataclass
class World:
    """Both sites on loopback, a pool of sessions for the fuzzer, and one conversation to protect."""

    services: Services
    loop: asyncio.AbstractEventLoop
    servers: dict[str, TestServer] = field(default_factory=dict)
    client: aiohttp.ClientSession | None = None
    pool: dict[str, Session] = field(default_factory=dict)
    bystander_cid: str = ""
    bystander_session: Session | None = None
    statuses: Counter[int] = field(default_factory=Counter)
    sent: int = 0

    def session(self, site: str, name: str) -> Session:
        """The pool session ``name``, re-created if the fuzzer logged it out or quick-exited it."""
        store = self.services.visitor_sessions if site == "visitor" else self.services.staff_sessions
        current = self.pool.get(name)
        if current is not None and store.get(current.id) is current:
            return current
        session = store.create()
        chat = self.services.chat
        if name == "visitor_waiting":
            conv, _ = chat.start("fuzz waiting", session_id=session.id)
            session.conversation, session.attached = conv.id, conv.attached
        elif name == "visitor_open":
            conv, _ = chat.start("fuzz open", session_id=session.id)
            session.conversation, session.attached = conv.id, conv.attached
            chat.accept(conv.id, "dirk", 10_000)
        elif name in ("dirk", "sam"):
            session.staff = name
        self.pool[name] = session
        return session

    def cid(self, choice: str, staff_cookie: str) -> str:
        chat = self.services.chat
        if choice.startswith("text:"):
            return pct(choice[5:])
        if choice == "bystander" and staff_cookie != "sam":
            return self.bystander_cid  # a supervisor may legitimately join it: not for sam
        if choice == "ended":
            conv, _ = chat.start("fuzz ended")
            chat.end(conv.id, EndReason.VISITOR_LEFT)
            return conv.id
        if choice == "other":
            return self.session("visitor", "visitor_waiting").conversation
        return self.session("visitor", "visitor_open").conversation

    def cookie_header(self, site: str, req: Req) -> tuple[str, Session | None]:
        name = "oc_visitor" if site == "visitor" else "oc_staff"
        other = "oc_staff" if site == "visitor" else "oc_visitor"
        choice = req.cookie
        if choice == "none":
            return "", None
        if choice.startswith("garbage:"):
            return f"{name}={choice[8:]}", None
        if choice == "many":
            return "; ".join(f"{name}={secrets.token_urlsafe(8)}" for _ in range(30)), None
        pool_name = choice if choice not in ("both", "swapped", "other") else "visitor_plain"
        if site == "staff" and pool_name.startswith("visitor"):
            pool_name = "dirk"
        if site == "visitor" and pool_name in ("dirk", "sam"):
            pool_name = "visitor_plain"
        own = self.session(site, pool_name)
        if choice == "swapped":
            return f"{other}={own.id}", None
        if choice == "other":
            stranger = self.session("staff" if site == "visitor" else "visitor",
                                    "dirk" if site == "visitor" else "visitor_plain")
            return f"{name}={stranger.id}", None
        if choice == "both":
            return f"{name}={own.id}; {name}=garbage; {other}={own.id}", own
        return f"{name}={own.id}", own

    def body(self, req: Req, session: Session | None) -> tuple[Any, dict[str, str]]:
        token = {"valid": session.csrf if session else "x", "other": self.session("visitor", "visitor_plain").csrf,
                 "garbage": "\x00" + secrets.token_hex(4), "missing": None}[req.csrf]
        fields = list(req.fields)
        if token is not None:
            fields.insert(0, ("_csrf", token))
        if req.body_kind == "none":
            return None, {}
        if req.body_kind == "form":
            body = "&".join(f"{pct(k, '[]')}={pct(v)}" for k, v in fields)
            return body.encode(), {"Content-Type": "application/x-www-form-urlencoded"}
        if req.body_kind == "multipart":
            form = aiohttp.FormData(quote_fields=False)
            for i, (k, v) in enumerate(fields):
                # Part names go into a header line: the client refuses control characters there.
                name = "".join(ch for ch in k if ch.isprintable() and not "\ud800" <= ch <= "\udfff") or "f"
                safe_v = v.encode("utf-8", "surrogatepass")
                if i % 3 == 2:
                    form.add_field(name, safe_v, filename="x.bin")
                else:
                    form.add_field(name, safe_v.decode("utf-8", "replace"))
            return form, {}
        if req.body_kind == "json":
            data = json.dumps({k: [[[v]]] for k, v in fields}, ensure_ascii=False)
            return data.encode("utf-8", "surrogatepass"), {"Content-Type": "application/json"}
        if req.body_kind == "huge":
            limit = self.services.config.limits.body_bytes
            return b"_csrf=" + (token or "").encode() + b"&text=" + b"A" * (limit + len(req.raw) * 100), {
                "Content-Type": "application/x-www-form-urlencoded"}
        if req.body_kind == "bad_utf8":
            return (b"_csrf=" + (token or "").encode() + b"&text=\xff\xfe\xc3\x28&nickname=\xed\xa0\x80" + req.raw,
                    {"Content-Type": "application/x-www-form-urlencoded"})
        return req.raw, {"Content-Type": req.content_type}

    async def send(self, site: str, req: Req) -> tuple[int, dict[str, str], str]:
        assert self.client is not None
        staff_cookie = req.cookie if site == "staff" else ""
        parts = [p if isinstance(p, str) else self.cid(p[1], staff_cookie) for p in req.path]
        path = "".join(parts)
        if not path.startswith("/"):
            path = "/" + path
        cookie, session = self.cookie_header(site, req)
        body, headers = self.body(req, session)
        for name, value in req.headers:
            headers.setdefault(name, value)
        if cookie:
            headers["Cookie"] = cookie
        root = str(self.servers[site].make_url("/")).rstrip("/")
        url = URL(root + pct(path, "/%?=&[]#@:;,+~") + ("?" + req.query if req.query else ""), encoded=True)
        async with self.client.request(req.method, url, data=body, headers=headers, allow_redirects=False,
                                       skip_auto_headers=("User-Agent",)) as response:
            text = await response.read()
            self.sent += 1
            self.statuses[response.status] += 1
            return response.status, dict(response.headers), text.decode("utf-8", "replace")


class ErrorRecords(logging.Handler):
    """Collects log records at ERROR and above (the guard's 'internal error', aiohttp's own)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        # aiohttp logs every request it refuses before routing (a line too long, a bad method)
        # at ERROR; its status is checked on the response. Any other ERROR is a failure.
        if record.name == "aiohttp.server" and record.msg == "Error handling request from %s":
            return
        self.records.append(record)


def fuzz_config(config: Config) -> Config:
    """Capacity out of reach (a 503 'busy' page would otherwise be a legitimate answer), short holds."""
    limits = replace(config.limits, queue_length=100_000, conversations=100_000, sessions=100_000,
                     messages_per_minute=10_000)
    return replace(config, limits=limits, poll=replace(config.poll, hold_seconds=1))


@pytest.fixture
def world(config: Config) -> Iterator[World]:
    services = make_services(fuzz_config(config))
    loop = asyncio.new_event_loop()
    w = World(services, loop)

    async def start() -> None:
        for site in ("visitor", "staff"):
            server = TestServer(SITES[site](services))
            await server.start_server(**PRIVATE_RUNNER)
            w.servers[site] = server
        w.client = aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar(),
                                         timeout=aiohttp.ClientTimeout(total=30))

    harden_protocol_errors()  # what start_site does in production (a live test proves that)
    loop.run_until_complete(start())
    # The conversation the fuzzer must not touch: a visitor and carla, messages both ways, a note.
    chat = services.chat
    carla = services.staff_sessions.create()
    carla.staff = "carla"
    w.bystander_session = services.visitor_sessions.create()
    conv, _ = chat.start("bystander", session_id=w.bystander_session.id)
    w.bystander_session.conversation = conv.id
    w.bystander_session.attached = conv.attached
    w.bystander_cid = conv.id
    chat.post(conv.id, Author.VISITOR, BYSTANDER_TEXT)
    chat.accept(conv.id, "carla", 3)
    chat.post(conv.id, Author.STAFF, "counsellor reply to the bystander", sender="carla")
    chat.add_note(conv.id, NoteKind.NOTE, "carla", "bystander note")
    errors = ErrorRecords()
    logging.getLogger().addHandler(errors)
    try:
        yield w
    finally:
        logging.getLogger().removeHandler(errors)

        async def stop() -> None:
            if w.client is not None:
                await w.client.close()
            for server in w.servers.values():
                await server.close()

        loop.run_until_complete(stop())
        loop.close()
    assert not errors.records, [f"{r.name}: {r.getMessage()}" for r in errors.records]


def snapshot(services: Services, cid: str) -> tuple[Any, ...]:
    conv = services.chat.get(cid)
    return (conv.state, conv.counsellor, conv.urgent, sorted(conv.joined), conv.nickname,
            [(m.seq, m.author, m.text, m.sender, m.event) for m in conv.messages],
            [(n.kind, n.author, n.text) for n in conv.notes])


def assert_safe_response(status: int, headers: dict[str, str], body: str, req: Req) -> None:
    assert status < 500, f"{status} for {req}"
    for name, value in SECURITY_HEADERS.items():
        assert headers.get(name) == value, f"{name} missing on {status} for {req}"
    assert "<script" not in body.lower(), f"a script in the answer to {req}"
    assert "Traceback" not in body


def fuzz_site(world: World, site: str) -> None:
    services = world.services
    templates = route_templates(SITES[site](services))
    assert len(templates) >= (10 if site == "visitor" else 15), templates
    before = snapshot(services, world.bystander_cid)

    @settings(max_examples=PER_SITE, deadline=None, database=None, derandomize=PROFILE == "ci",
              suppress_health_check=list(HealthCheck))
    @given(req=requests(templates))
    def one(req: Req) -> None:
        status, headers, body = world.loop.run_until_complete(world.send(site, req))
        assert_safe_response(status, headers, body, req)

    one()
    assert snapshot(services, world.bystander_cid) == before, "the bystander's conversation changed"
    assert services.chat.get(world.bystander_cid).state is State.OPEN
    # Both sides still reach it: the server is up and the conversation works.
    assert world.bystander_session is not None
    bystander = Req("GET", ["/chat/messages"], "", "none", "none", [], "missing", b"", "", [])

    async def check() -> None:
        assert world.client is not None and world.bystander_session is not None
        root = world.servers["visitor"].make_url("/chat/messages")
        async with world.client.get(root, headers={"Cookie": f"oc_visitor={world.bystander_session.id}"}
                                    ) as response:
            assert response.status == 200 and BYSTANDER_TEXT in await response.text()

    world.loop.run_until_complete(check())
    status, _, _ = world.loop.run_until_complete(world.send(site, replace(bystander, path=["/"])))
    assert status in (200, 303), "the site still answers"
    print(f"\nfuzz {site}: {world.sent} requests over {len(templates)} routes; statuses {dict(world.statuses)}")


def test_fuzz_visitor_site(world: World) -> None:
    fuzz_site(world, "visitor")


def test_fuzz_staff_site(world: World) -> None:
    fuzz_site(world, "staff")


def test_fuzz_raw_bytes_on_the_socket(world: World) -> None:
    """Garbage that is not HTTP at all, or barely: the server answers 4xx or closes, and stays up."""
    server = world.servers["visitor"]
    port = server.port
    assert port is not None
    prefixes = [b"", b"GET / HTTP/1.1\r\n", b"POST /start HTTP/1.1\r\nHost: x\r\n", b"GET /", b"\x16\x03\x01",
                # Control characters in header values, which no client library will send.
                b"POST /start HTTP/1.1\r\nContent-Type: a\x01b\r\nCookie: oc_visitor=\x00\x7f\r\nX: \x1b[2J"]
    answers: Counter[str] = Counter()

    @settings(max_examples=RAW, deadline=None, database=None, derandomize=PROFILE == "ci",
              suppress_health_check=list(HealthCheck))
    @given(prefix=st.sampled_from(prefixes), junk=st.binary(max_size=2000))
    def one(prefix: bytes, junk: bytes) -> None:
        async def poke() -> bytes:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            try:
                writer.write(prefix + junk + b"\r\n\r\n")
                await writer.drain()
                return await asyncio.wait_for(reader.read(200), 5)
            except (ConnectionError, TimeoutError):
                return b""
            finally:
                writer.close()

        head = world.loop.run_until_complete(poke())
        status = head[9:12].decode("ascii", "replace") if head.startswith(b"HTTP/1.") else "closed"
        answers[status] += 1
        assert not status.startswith("5"), head

    one()

    async def alive() -> int:
        assert world.client is not None
        async with world.client.get(server.make_url("/")) as response:
            return response.status

    assert world.loop.run_until_complete(alive()) == 200
    print(f"\nraw socket: {sum(answers.values())} connections; answers {dict(answers)}")


def test_live_server_refuses_malformed_requests_with_its_headers(tmp_path: Path) -> None:
    """Requests aiohttp refuses before routing get our headers and no version from the real server."""
    with live_server(tmp_path) as server:
        port = int(server.visitor_url.rsplit(":", 1)[1].strip("/"))
        for request in (b"GET /?" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
                        b"G\x01T / HTTP/1.1\r\n\r\n", b"GET / HTTP/1.1\r\nX: " + b"b" * 9000 + b"\r\n\r\n"):
            with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                sock.sendall(request)
                answer = b""
                while chunk := sock.recv(65536):
                    answer += chunk
            head, _, body = answer.partition(b"\r\n\r\n")
            assert re.match(rb"HTTP/1\.[01] 400 ", head), head
            assert b"Content-Security-Policy: default-src 'none'" in head
            assert b"Server: onionchat\r\n" in head + b"\r\n" and b"aiohttp" not in head
            assert b"aaaa" not in body and b"bbbb" not in body, "the refused bytes are not echoed"
