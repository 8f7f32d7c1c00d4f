"""What a visitor's and a counsellor's browser do, over the HTTP flow of the two sites."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field

from bench.http import Connection, HttpError, Response
from bench.proc import PASSWORD

_QUEUE_ROW = re.compile(rb'action="/accept/([^"]+)".*?<span class="who">(n\d+)</span>', re.DOTALL)


def expect(response: Response, status: int, what: str) -> Response:
    """Fail the benchmark loudly when the server answers differently than a browser expects."""
    if response.status != status:
        raise HttpError(f"{what}: expected {status}, got {response.status}: {response.body[:200]!r}")
    return response


@dataclass(slots=True)
class Visitor:
    """One visitor with a session, a conversation, and the connection its messages frame uses."""

    index: int
    conn: Connection
    cookie: str = ""
    csrf: str = ""
    cid: str = ""
    # token -> client time the counsellor's POST was answered (None: not answered yet)
    pending: dict[bytes, float | None] = field(default_factory=dict)
    seen_early: dict[bytes, float] = field(default_factory=dict)  # read before the POST's answer
    polls: int = 0

    @property
    def nickname(self) -> str:
        """A nickname that identifies this visitor in the counsellor's queue."""
        return f"n{self.index}"

    async def start(self) -> None:
        """Open the landing page (session cookie, CSRF token) and start a chat."""
        landing = expect(await self.conn.request("GET", "/"), 200, "landing page")
        self.cookie = f"oc_visitor={landing.cookies['oc_visitor']}"
        self.csrf = landing.csrf()
        started = await self.conn.request("POST", "/start", cookie=self.cookie,
                                          form={"_csrf": self.csrf, "nickname": self.nickname})
        expect(started, 303, "start chat")
        # Starting a chat may give the session a new id and CSRF token (no planted ids).
        if "oc_visitor" in started.cookies:
            self.cookie = f"oc_visitor={started.cookies['oc_visitor']}"
        compose = expect(await self.conn.request("GET", "/chat/compose", cookie=self.cookie), 200, "compose")
        self.csrf = compose.csrf()

    async def send(self, text: str) -> None:
        """Send a message from the compose frame."""
        answer = await self.conn.request("POST", "/chat/send", cookie=self.cookie,
                                         form={"_csrf": self.csrf, "text": text})
        expect(answer, 303, "visitor send")

    async def frame(self, url: str, timeout: float) -> Response:
        """One request of the messages frame."""
        answer = await self.conn.request("GET", url, cookie=self.cookie, timeout=timeout)
        self.polls += 1
        return expect(answer, 200, "messages frame")


@dataclass(slots=True)
class Counsellor:
    """One signed-in counsellor with one keep-alive connection to the staff site."""

    name: str
    conn: Connection
    cookie: str = ""
    csrf: str = ""
    chats: list[Visitor] = field(default_factory=list)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def login(self, timeout: float = 120.0) -> float:
        """Log in (argon2id at production cost); returns the seconds the POST took."""
        form = expect(await self.conn.request("GET", "/login"), 200, "login page")
        cookie = f"oc_staff={form.cookies['oc_staff']}"
        loop = asyncio.get_running_loop()
        began = loop.time()
        answer = await self.conn.request("POST", "/login", cookie=cookie, timeout=timeout,
                                         form={"_csrf": form.csrf(), "username": self.name, "password": PASSWORD})
        took = loop.time() - began
        expect(answer, 303, f"login of {self.name}")
        self.cookie = f"oc_staff={answer.cookies['oc_staff']}"  # regenerated at login
        workspace = expect(await self.conn.request("GET", "/", cookie=self.cookie), 200, "workspace")
        self.csrf = workspace.csrf()
        return took

    async def accept(self, visitors: list[Visitor]) -> None:
        """Accept these visitors (found by nickname in the board's waiting line; paused, it lists all)."""
        board = expect(await self.conn.request("GET", "/board?paused=1", cookie=self.cookie), 200, "board")
        queue = {nick.decode(): cid.decode() for cid, nick in _QUEUE_ROW.findall(board.body)}
        for visitor in visitors:
            cid = queue.get(visitor.nickname)
            if cid is None:
                raise HttpError(f"{visitor.nickname} is not in the queue")
            answer = await self.conn.request("POST", f"/accept/{cid}", cookie=self.cookie,
                                             form={"_csrf": self.csrf})
            expect(answer, 303, "accept")
            visitor.cid = cid
            self.chats.append(visitor)

    async def send(self, visitor: Visitor, text: str) -> None:
        """Send a message in ``visitor``'s chat; returns once the POST is answered."""
        async with self.lock:
            answer = await self.conn.request("POST", f"/chat/{visitor.cid}/send", cookie=self.cookie,
                                             form={"_csrf": self.csrf, "text": text})
        expect(answer, 303, "counsellor send")
