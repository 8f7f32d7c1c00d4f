"""Staff login under attack, in process: the throttle's budgets, fair hashing turns, no lock-out.

Requests say which Tor circuit they came on with a test header (``circuit_of`` reads the real
PROXY-protocol id on the staff onion; here every request would otherwise be the one "local").
"""

from __future__ import annotations

import asyncio
import re

import pyotp
import pytest
from aiohttp import web

import onionchat.staff
from onionchat.accounts import AccountStore
from onionchat.config import Config, from_mapping
from onionchat.errors import ConfigError
from onionchat.throttle import LoginBudget, LoginThrottle, Verdict
from onionchat.turns import FairTurns
from onionchat.web import circuit
from onionchat.web.app import Services
from tests.conftest import PASSWORD, AiohttpClient, Site, make_services, private_client

WRONG = "not the password at all"
CIRCUIT_HEADER = "X-Test-Circuit"


def budget(config: Config) -> LoginBudget:
    staff = config.staff
    return LoginBudget(per_name_and_circuit=staff.login_attempts, per_circuit=staff.login_attempts_per_circuit,
                       per_name=staff.login_attempts_per_account, window=staff.login_window_seconds)


# -- the throttle alone -------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_an_attempt_is_counted_when_it_is_checked() -> None:
    clock = Clock()
    throttle = LoginThrottle(LoginBudget(per_name_and_circuit=5, per_circuit=20, per_name=50, window=60),
                             clock=clock)
    attempts = [throttle.attempt("carla", circuit="a") for _ in range(7)]
    # No await between check and count: the sixth is refused however the five ended.
    assert [a.verdict for a in attempts] == [Verdict.GO] * 5 + [Verdict.THROTTLED] * 2
    throttle.succeeded(attempts[0])  # a right password is not a failure
    assert throttle.attempt("carla", circuit="a").verdict is Verdict.GO
    assert throttle.attempt("carla", circuit="a").verdict is Verdict.THROTTLED
    assert throttle.attempt("carla", circuit="b").verdict is Verdict.GO  # another circuit: its own budget
    clock.now += 60
    assert throttle.attempt("carla", circuit="a").verdict is Verdict.GO  # the window has passed


def test_one_circuit_cannot_try_many_names() -> None:
    throttle = LoginThrottle(LoginBudget(per_name_and_circuit=5, per_circuit=20, per_name=50, window=60))
    verdicts = [throttle.attempt(f"name{i}", circuit="a").verdict for i in range(21)]
    assert verdicts == [Verdict.GO] * 20 + [Verdict.THROTTLED]
    assert throttle.attempt("name0", circuit="b").verdict is Verdict.GO


def test_guessing_spread_over_many_circuits_asks_for_the_code() -> None:
    throttle = LoginThrottle(LoginBudget(per_name_and_circuit=5, per_circuit=20, per_name=50, window=60))
    for c in range(10):
        assert all(throttle.attempt("carla", circuit=f"c{c}").verdict is Verdict.GO for _ in range(5))
    assert throttle.attempt("carla", circuit="fresh").verdict is Verdict.CODE_FIRST
    # A signed-in person confirming their own password is not stopped by others' guessing.
    assert throttle.attempt("carla", circuit="mine", ceiling=False).verdict is Verdict.GO
    assert throttle.attempt("dirk", circuit="fresh").verdict is Verdict.GO


def test_the_throttle_has_a_memory_bound() -> None:
    throttle = LoginThrottle(LoginBudget(per_name_and_circuit=5, per_circuit=10**6, per_name=50, window=60),
                             max_buckets=100)
    for i in range(1000):
        throttle.attempt(f"ghost{i}", circuit="a")
    assert len(throttle) <= 100


# -- fair turns ---------------------------------------------------------------------------------


async def test_turns_go_round_robin_between_circuits_then_names() -> None:
    turns = FairTurns(1)
    order: list[str] = []
    gate = asyncio.Event()

    async def hash_for(who: str, circuit: str, name: str) -> None:
        async with turns.turn(circuit=circuit, name=name):
            order.append(who)
            await gate.wait()

    first = asyncio.create_task(hash_for("flood-0", "attacker", "carla"))
    await asyncio.sleep(0)  # the first one holds the only turn
    flood = [asyncio.create_task(hash_for(f"flood-{i}", "attacker", "carla")) for i in range(1, 30)]
    spray = [asyncio.create_task(hash_for(f"spray-{i}", "attacker", f"ghost{i}")) for i in range(3)]
    real = asyncio.create_task(hash_for("dirk", "dirk-circuit", "dirk"))
    await asyncio.sleep(0)
    assert turns.waiting() == 33
    gate.set()
    await asyncio.gather(first, *flood, *spray, real)
    # dirk's circuit is served right after the turn that was running, ahead of 32 queued floods;
    # within the attacker's circuit the names take turns too.
    assert order[:2] == ["flood-0", "dirk"]
    assert order[2:7] == ["spray-0", "spray-1", "spray-2", "flood-1", "flood-2"]


async def test_a_cancelled_wait_does_not_lose_the_turn() -> None:
    turns = FairTurns(1)
    async with turns.turn(circuit="a", name="x"):
        waiter = asyncio.create_task(turns._acquire("b", "y"))
        await asyncio.sleep(0)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
    async with asyncio.timeout(1):
        async with turns.turn(circuit="c", name="z"):
            assert turns.waiting() == 0


# -- the login page, with circuits ------------------------------------------------------------


@pytest.fixture
def circuits(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each request comes on the circuit its test header names."""
    monkeypatch.setattr(circuit, "circuit_of", lambda request: request.headers.get(CIRCUIT_HEADER, "local"))


class Staff(Site):
    """A staff browser on one circuit."""

    def __init__(self, client: object, on: str) -> None:
        super().__init__(client)  # type: ignore[arg-type]
        self.on = on

    async def login(self, name: str, password: str, **extra: str) -> tuple[int, str]:
        response, page = await self.post("/login", {"username": name, "password": password, **extra},
                                          headers={CIRCUIT_HEADER: self.on})
        return response.status, page


async def browser(aiohttp_client: AiohttpClient, app: web.Application, on: str) -> Staff:
    site = Staff(await private_client(aiohttp_client, app), on)
    await site.get("/login")
    return site


@pytest.fixture
def staff_app(services: Services, circuits: None) -> web.Application:
    return onionchat.staff.create_app(services)


def clean(page: str) -> str:
    return re.sub(r'name="_csrf" value="[^"]+"', "", page)


async def test_a_guesser_cannot_lock_the_counsellor_out(aiohttp_client: AiohttpClient, staff_app: web.Application,
                                                        services: Services) -> None:
    attacker = await browser(aiohttp_client, staff_app, "attacker")
    for _ in range(services.config.staff.login_attempts):
        assert (await attacker.login("carla", WRONG))[0] == 403
    status, page = await attacker.login("carla", PASSWORD)
    assert status == 429 and "Too many failed logins" in page  # even the right password, from there
    carla = await browser(aiohttp_client, staff_app, "carla-laptop")
    assert (await carla.login("carla", PASSWORD))[0] == 303


async def test_failures_spread_over_circuits_open_only_to_the_code(
        aiohttp_client: AiohttpClient, staff_app: web.Application, services: Services,
        monkeypatch: pytest.MonkeyPatch) -> None:
    secret = pyotp.random_base32()
    services.accounts.enable_totp("carla", secret, 0)
    checked: list[str] = []
    verify = AccountStore.verify

    def counting(store: AccountStore, name: str, password: str) -> object:
        checked.append(name)
        return verify(store, name, password)

    monkeypatch.setattr(AccountStore, "verify", counting)
    staff = services.config.staff
    circuits_needed = staff.login_attempts_per_account // staff.login_attempts
    for c in range(circuits_needed):
        guesser = await browser(aiohttp_client, staff_app, f"guesser-{c}")
        for name in ("carla", "dirk", "ghost"):  # dirk has no 2FA; ghost has no account
            for _ in range(staff.login_attempts):
                await guesser.login(name, WRONG)
    checked.clear()
    pages = {}
    for name in ("carla", "dirk", "ghost"):
        someone = await browser(aiohttp_client, staff_app, f"new-{name}")
        status, page = await someone.login(name, PASSWORD)
        assert status == 429 and 'name="code"' in page
        pages[name] = clean(page)
        status, page = await someone.login(name, PASSWORD, code="000000")
        assert status == 403 and 'name="code"' in page
    assert pages["carla"] == pages["dirk"] == pages["ghost"]  # nothing tells the names apart
    assert checked == []  # not one of those reached argon2
    # The counsellor with 2FA is still let in, with the code together with the password.
    carla = await browser(aiohttp_client, staff_app, "carla-laptop")
    status, _ = await carla.login("carla", PASSWORD, code=pyotp.TOTP(secret).now())
    assert status == 303 and checked == ["carla"]
    response, workspace = await carla.get("/")
    assert response.status == 200 and "Workspace" in workspace


async def test_the_code_step_counts_too(aiohttp_client: AiohttpClient, staff_app: web.Application,
                                        services: Services) -> None:
    services.accounts.enable_totp("carla", pyotp.random_base32(), 0)
    carla = await browser(aiohttp_client, staff_app, "a")
    assert (await carla.login("carla", PASSWORD))[0] == 303
    await carla.get("/login/code")
    answers = []
    for _ in range(services.config.staff.login_attempts + 1):
        response, page = await carla.post("/login/code", {"code": "000000"}, headers={CIRCUIT_HEADER: "a"})
        answers.append((response.status, "Wrong code" in page))
    # The right password was taken back out of the count; the wrong codes were not.
    assert answers == [(403, True)] * services.config.staff.login_attempts + [(429, False)]


async def test_an_unknown_name_answers_like_a_known_one(aiohttp_client: AiohttpClient,
                                                        staff_app: web.Application) -> None:
    """The issue's probe: spend what unknown names share, then ask for a real and a missing name."""
    site = await browser(aiohttp_client, staff_app, "prober")
    for i in range(5):
        await site.login(f"nobody{i}", WRONG)
    answers = {}
    for name in ("carla", "nobody-else"):
        answers[name] = [await site.login(name, WRONG) for _ in range(7)]
    statuses = {name: [s for s, _ in rows] for name, rows in answers.items()}
    assert statuses["carla"] == statuses["nobody-else"] == [403] * 5 + [429] * 2
    pages = {name: [clean(p) for _, p in rows] for name, rows in answers.items()}
    assert pages["carla"] == pages["nobody-else"]


def test_a_config_that_would_let_one_circuit_lock_an_account_is_refused() -> None:
    with pytest.raises(ConfigError, match="login_attempts_per_account"):
        from_mapping({"staff": {"login_attempts": 10, "login_attempts_per_account": 5}})


def test_make_services_uses_the_configured_budgets(config: Config) -> None:
    services = make_services(config)
    assert services.login_throttle.budget == budget(config)
