"""Shared fixtures: a config in a temp data dir, fast test hashing, and clients for both sites."""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Awaitable, Callable, Generator, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient, TestServer
from argon2 import PasswordHasher, Type

import onionchat.staff
import onionchat.visitor
from onionchat.accounts import AccountStore, Role
from onionchat.config import CircuitsConfig, Config, HoursConfig, LimitsConfig, PollConfig, ServerConfig, StaffConfig
from onionchat.eventloop import loop_factory
from onionchat.web.app import Services, build_services
from onionchat.web.server import PRIVATE_RUNNER

# Each site's own application factory, by the name tests use for it.
SITES: dict[str, Callable[[Services], web.Application]] = {"visitor": onionchat.visitor.create_app,
                                                          "staff": onionchat.staff.create_app}

AiohttpClient = Callable[..., Awaitable[TestClient[Any, Any]]]
PASSWORD = "a long enough test password"
CSRF_RE = re.compile(r'name="_csrf" value="([^"]+)"')


def fast_hasher() -> PasswordHasher:
    """argon2id with tiny parameters: the production ones cost 64 MiB and ~0.1 s per hash."""
    return PasswordHasher(time_cost=1, memory_cost=8, parallelism=1, type=Type.ID)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]
                              ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """In CI every test runs: a skip (no tor, no chromium) is turned into a failure."""
    report = yield
    if os.environ.get("CI") == "true" and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, which must run everything: {report.longrepr}"
    return report


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item
                                  ) -> dict[str, Callable[[], asyncio.AbstractEventLoop]]:
    """In-process tests run on the loop ``onionchat serve`` runs on (uvloop where installed)."""
    factory = loop_factory("auto")
    return {"uvloop" if factory is not None else "asyncio": factory or asyncio.new_event_loop}


@pytest.fixture(autouse=True)
def _in_ci_everything_runs() -> Iterator[None]:
    """Nothing in this suite reads the real home directory's data by accident."""
    old = os.environ.pop("ONIONCHAT_CONFIG", None)
    yield
    if old is not None:
        os.environ["ONIONCHAT_CONFIG"] = old


@pytest.fixture
def config(tmp_path: Path) -> Config:
    """Defaults, with a temp data dir and a short hold so held polls end quickly in tests.

    Visitors may join the line before a counsellor logs in (most tests start a chat first);
    tests of the 'nobody available' page use the default instead.
    """
    return Config(server=ServerConfig(data_dir=str(tmp_path / "data")),
                  poll=PollConfig(hold_seconds=2), limits=LimitsConfig(), staff=StaffConfig(),
                  hours=HoursConfig(open_without_staff=True), circuits=UNLIMITED_CIRCUITS)


# In-process test clients have no Tor circuit ids: everything they do is the one circuit LOCAL.
# Tests of other things must not run into the per-circuit budgets (tests/test_circuits.py tests
# those, with the defaults).
UNLIMITED_CIRCUITS = CircuitsConfig(sessions=1_000_000, chats=100_000, resumes=100_000, connections=100_000,
                                    requests_per_second=100_000)


def make_services(config: Config) -> Services:
    """Services with fast hashing and three staff accounts."""
    accounts = AccountStore(config.data_dir, hasher=fast_hasher(), password_min=config.staff.password_min)
    for name, role in (("carla", Role.COUNSELLOR), ("dirk", Role.COUNSELLOR), ("sam", Role.SUPERVISOR)):
        accounts.add(name, PASSWORD, role)
    return build_services(config, accounts=accounts)


@pytest.fixture
def services(config: Config) -> Services:
    """The shared in-memory services of one server."""
    return make_services(config)


class Site:
    """A browser-like client of one site: keeps cookies, reads CSRF tokens from pages."""

    def __init__(self, client: TestClient[Any, Any]) -> None:
        self.client = client
        self.csrf = ""

    async def get(self, path: str, **kwargs: Any) -> tuple[ClientResponse, str]:
        """GET a page and remember its CSRF token."""
        response = await self.client.get(path, allow_redirects=False, **kwargs)
        text = await response.text(errors="replace")  # /favicon.ico is an image
        match = CSRF_RE.search(text)
        if match:
            self.csrf = match.group(1)
        return response, text

    async def post(self, path: str, data: dict[str, str] | None = None, *, csrf: str | None = None,
                   **kwargs: Any) -> tuple[ClientResponse, str]:
        """POST a form with the page's CSRF token (or the one given)."""
        form = {"_csrf": self.csrf if csrf is None else csrf, **(data or {})}
        if csrf == "":
            form.pop("_csrf")
        response = await self.client.post(path, data=form, allow_redirects=False, **kwargs)
        return response, await response.text()


async def private_client(aiohttp_client: AiohttpClient, app: web.Application) -> TestClient[Any, Any]:
    """A test client whose server runs with production's runner options (no access log)."""
    server = TestServer(app)
    await server.start_server(**PRIVATE_RUNNER)
    return await aiohttp_client(server)


NewVisitor = Callable[[], Awaitable[Site]]  # the new_visitor fixture
NewStaff = Callable[[str], Awaitable[Site]]  # the new_staff fixture


@pytest.fixture
def new_visitor(aiohttp_client: AiohttpClient, services: Services) -> NewVisitor:
    """Factory: a fresh visitor browser (own cookie jar) on the visitor site."""
    app = onionchat.visitor.create_app(services)

    async def make() -> Site:
        site = Site(await private_client(aiohttp_client, app))
        await site.get("/")
        return site

    return make


@pytest.fixture
def new_staff(aiohttp_client: AiohttpClient, services: Services) -> NewStaff:
    """Factory: a staff browser logged in as ``name``."""
    app = onionchat.staff.create_app(services)

    async def make(name: str = "carla") -> Site:
        site = Site(await private_client(aiohttp_client, app))
        await site.get("/login")
        response, _ = await site.post("/login", {"username": name, "password": PASSWORD})
        assert response.status == 303, "login failed"
        await site.get("/")
        return site

    return make


async def start_chat(visitor: Site, nickname: str = "") -> str:
    """Start a chat as ``visitor``; returns the passphrase shown on the chat page."""
    response, _ = await visitor.post("/start", {"nickname": nickname})
    assert response.status == 303
    _, page = await visitor.get("/chat")
    match = re.search(r'class="words">([^<]+)<', page)
    assert match, "passphrase not shown"
    return match.group(1)


def only(services: Services) -> str:
    """The id of the one conversation in memory."""
    (conv,) = list(services.chat)
    return conv.id


def with_limits(config: Config, **changes: Any) -> Config:
    """The config with some limits changed."""
    return replace(config, limits=replace(config.limits, **changes))


@dataclass(frozen=True, slots=True)
class OpenChat:
    """A conversation a counsellor has accepted: both browsers, its id, and the passphrase."""

    visitor: Site
    staff: Site
    cid: str
    passphrase: str


OpenChatFactory = Callable[..., Awaitable[OpenChat]]  # the open_chat fixture


@pytest.fixture
def open_chat(new_visitor: NewVisitor, new_staff: NewStaff, services: Services) -> OpenChatFactory:
    """Factory: a new visitor starts a chat (with ``nickname``) and ``counsellor`` accepts it."""

    async def make(nickname: str = "", counsellor: str = "carla") -> OpenChat:
        visitor = await new_visitor()
        passphrase = await start_chat(visitor, nickname)
        cid = max(services.chat, key=lambda c: c.created).id  # the chat just started
        staff = await new_staff(counsellor)
        response, _ = await staff.post(f"/accept/{cid}")
        assert response.status == 303, "accept failed"
        return OpenChat(visitor, staff, cid, passphrase)

    return make
