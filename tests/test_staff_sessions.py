"""Staff sessions: signed out everywhere after an account change; idle means the person did nothing."""

from __future__ import annotations

from dataclasses import replace

import pyotp
import pytest

from onionchat.config import Config
from onionchat.sessions import SessionStore
from onionchat.web.app import Services
from tests.conftest import PASSWORD, NewStaff, Site, make_services

NEW_PASSWORD = "another long enough password"
# What Chromium and Firefox send when a frame's Refresh (or a frame loading with its page)
# asks: no Sec-Fetch-User, which marks what the person did (checked in both, JavaScript off).
SELF_REFRESH = {"Sec-Fetch-Dest": "iframe", "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Site": "same-origin"}
CLICK = {**SELF_REFRESH, "Sec-Fetch-User": "?1"}


class Clock:
    def __init__(self) -> None:
        self.now = 5000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def services(config: Config, clock: Clock) -> Services:
    """The usual services, with staff sessions on a clock the test moves."""
    base = make_services(config)
    staff = base.config.staff
    return replace(base, staff_sessions=SessionStore(1000, staff.idle_minutes * 60, idle_by_action=True,
                                                     lifetime_seconds=staff.session_hours * 3600, clock=clock))


async def signed_in(site: Site, path: str = "/account") -> bool:
    response, _ = await site.get(path)
    return response.status == 200


async def test_a_password_change_signs_out_every_other_session(new_staff: NewStaff) -> None:
    mine, stolen = await new_staff("carla"), await new_staff("carla")
    await mine.get("/account")
    response, _ = await mine.post("/account/password", {"current_password": PASSWORD, "new_password": NEW_PASSWORD,
                                                         "new_password_again": NEW_PASSWORD})
    assert response.status == 303
    assert await signed_in(mine)
    assert not await signed_in(stolen)


@pytest.mark.parametrize("change", ["password", "reset-2fa", "role", "disable", "remove"])
async def test_an_admin_change_signs_the_account_out(new_staff: NewStaff, services: Services, change: str) -> None:
    from onionchat.accounts import Role

    services.accounts.add("ada", PASSWORD, Role.ADMIN)
    carla, ada = await new_staff("carla"), await new_staff("ada")
    form = {"password": {"password": NEW_PASSWORD, "password_again": NEW_PASSWORD},
            "role": {"role": "supervisor"}, "remove": {"confirm": "1"}}.get(change, {})
    await ada.get("/admin/staff/carla")
    response, _ = await ada.post(f"/admin/staff/carla/{change}", form)
    assert response.status == 303
    assert not await signed_in(carla)
    assert await signed_in(ada)


async def test_a_change_between_password_and_code_voids_the_login(new_staff: NewStaff, services: Services) -> None:
    secret = pyotp.random_base32()
    services.accounts.enable_totp("carla", secret, 0)
    someone = await new_staff("dirk")  # any browser; it logs in as carla below
    await someone.get("/login")
    response, _ = await someone.post("/login", {"username": "carla", "password": PASSWORD})
    assert response.headers["Location"] == "/login/code"
    await someone.get("/login/code")
    services.accounts.set_password("carla", NEW_PASSWORD)  # e.g. 'onionchat staff passwd carla'
    response, _ = await someone.post("/login/code", {"code": pyotp.TOTP(secret).now()})
    assert response.status == 303 and response.headers["Location"] == "/login"


async def test_changes_with_the_command_line_reach_sessions(new_staff: NewStaff, services: Services) -> None:
    """The CLI writes accounts.json; the running server reads it back and compares generations."""
    from onionchat.accounts import AccountStore
    from tests.conftest import fast_hasher

    carla, dirk = await new_staff("carla"), await new_staff("dirk")
    cli = AccountStore(services.config.data_dir, hasher=fast_hasher())
    cli.reset_totp("carla")
    assert services.accounts.reload_if_changed()
    assert not await signed_in(carla)
    assert await signed_in(dirk)


async def test_held_updates_do_not_keep_a_session_alive(new_staff: NewStaff, services: Services,
                                                        clock: Clock) -> None:
    staff = await new_staff("carla")
    idle = services.config.staff.idle_minutes * 60
    for _ in range(int(idle // 20) + 2):  # an open workspace, its board updating every 20 s
        clock.now += 20
        response, _ = await staff.get("/board?v=stale&p=0")  # the frame protocol's own reload
        if response.status != 200:
            break
        response, _ = await staff.get("/status", headers=SELF_REFRESH)  # a frame loading with its page
        if response.status != 200:
            break
        response, _ = await staff.get("/alerts?v=1")  # the alerts tab reloading itself
        if response.status != 200:
            break
    assert response.status == 303 and response.headers["Location"] == "/login"
    assert await signed_in(staff) is False


async def test_what_the_person_does_keeps_the_session(new_staff: NewStaff, services: Services,
                                                      clock: Clock) -> None:
    staff = await new_staff("carla")
    idle = services.config.staff.idle_minutes * 60
    for request in ({"path": "/account"}, {"path": "/status", "headers": CLICK}):
        clock.now += idle - 1
        response, _ = await staff.get(**request)
        assert response.status == 200
    clock.now += idle - 1
    await staff.get("/account")
    response, _ = await staff.post("/availability", {"available": "0"})  # a form
    assert response.status == 303 and response.headers["Location"] == "/status"
    clock.now += idle - 1
    assert await signed_in(staff)


async def test_a_session_ends_after_its_lifetime_however_busy(new_staff: NewStaff, services: Services,
                                                              clock: Clock) -> None:
    staff = await new_staff("carla")
    lifetime = services.config.staff.session_hours * 3600
    step = services.config.staff.idle_minutes * 60 - 1
    busy_for = 0
    while await signed_in(staff):
        clock.now += step
        busy_for += step
    assert lifetime < busy_for <= lifetime + step
    again = await new_staff("carla")  # logging in again starts a new lifetime
    assert await signed_in(again)


async def test_a_quiet_shift_is_warned_before_the_sign_out_and_can_stay(new_staff: NewStaff, services: Services,
                                                                        clock: Clock) -> None:
    staff = await new_staff("carla")
    idle = services.config.staff.idle_minutes * 60
    clock.now += idle - 600  # ten minutes left: no warning yet
    _, board = await staff.get("/board?v=stale&p=0", headers=SELF_REFRESH)
    assert "I am still here" not in board
    clock.now += 400  # under five minutes left: the board and the alerts tab say when, and how to stay
    _, board = await staff.get("/board?v=stale&p=0", headers=SELF_REFRESH)
    assert "you will be signed out at" in board and 'action="/still-here"' in board
    _, alerts = await staff.get("/alerts?v=1")
    assert "<title>Signing out soon" in alerts and 'action="/still-here"' in alerts
    response, _ = await staff.post("/still-here")
    assert response.status == 303 and response.headers["Location"] == "/board"
    clock.now += idle - 600  # a whole idle period later than before: still signed in, no warning
    _, board = await staff.get("/board?v=stale&p=0", headers=SELF_REFRESH)
    assert "I am still here" not in board
    assert await signed_in(staff)
