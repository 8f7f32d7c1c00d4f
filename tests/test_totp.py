"""Two-factor login: codes, replay refused (also after a restart), enrolment, the second login step."""

from __future__ import annotations

import base64
import re
import stat
import time
from dataclasses import replace
from pathlib import Path

import pyotp
import pytest
from aiohttp.test_utils import TestServer

import onionchat.staff
from onionchat import config as configmod
from onionchat import totp
from onionchat.accounts import AccountStore, Role
from onionchat.config import Config
from onionchat.totp import Stage
from onionchat.web import keys
from onionchat.web.app import Services
from tests.conftest import PASSWORD, AiohttpClient, NewStaff, Site, fast_hasher, make_services, private_client

SECRET_RE = re.compile(r'<code class="secret">([A-Z2-7 ]+)</code>')


def code_at(secret: str, offset: int = 0) -> str:
    """The code of the current time-step plus ``offset`` steps."""
    return pyotp.TOTP(secret).at(time.time() + 30 * offset)


# Pure functions


def test_codes_match_their_step_with_one_step_of_drift() -> None:
    secret = totp.new_secret()
    now = 1_700_000_000.0
    step = int(now // 30)
    generator = pyotp.TOTP(secret)
    assert totp.matching_step(secret, generator.at(now), now) == step
    assert totp.matching_step(secret, generator.at(now - 30), now) == step - 1
    assert totp.matching_step(secret, generator.at(now + 30), now) == step + 1
    assert totp.matching_step(secret, generator.at(now - 90), now) is None
    code = generator.at(now)
    assert totp.matching_step(secret, f"{code[:3]} {code[3:]}", now) == step  # as apps show it
    assert totp.matching_step(secret, "12345", now) is None
    assert totp.matching_step(secret, "abcdef", now) is None
    assert totp.matching_step(secret, "١٢٣٤٥٦", now) is None  # non-ASCII digits are no code
    assert totp.matching_step("", code, now) is None


def test_qr_code_is_a_png_data_uri_naming_no_helpline() -> None:
    secret = totp.new_secret()
    uri = totp.provisioning_uri(secret, "carla")
    assert uri.startswith("otpauth://totp/") and "issuer=onionchat" in uri and secret in uri
    data = totp.qr_png_data_uri(uri)
    assert data.startswith("data:image/png;base64,")
    assert base64.b64decode(data.split(",", 1)[1]).startswith(b"\x89PNG\r\n\x1a\n")
    assert totp.grouped("ABCDEFGHIJ") == "ABCD EFGH IJ"


def test_pending_steps_expire_and_stay_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    steps = totp.PendingSteps(limit=3)
    steps.put("s1", "carla", Stage.CODE)
    assert steps.get("s1", Stage.CODE) is not None
    assert steps.get("s1", Stage.ENROL) is None  # another stage is not this one
    for sid in ("s2", "s3", "s4"):
        steps.put(sid, "carla", Stage.CODE)
    assert len(steps) == 3 and steps.get("s1", Stage.CODE) is None  # the oldest made room
    later = time.monotonic() + totp.CODE_SECONDS + 1
    monkeypatch.setattr(time, "monotonic", lambda: later)
    assert steps.get("s4", Stage.CODE) is None


# The account store


def test_used_steps_are_refused_and_stay_refused_after_a_restart(tmp_path: Path) -> None:
    store = AccountStore(tmp_path, hasher=fast_hasher())
    store.add("carla", PASSWORD, Role.COUNSELLOR)
    assert not store.use_totp_step("carla", 5)  # no 2FA yet: nothing to use
    secret = totp.new_secret()
    store.enable_totp("carla", secret, 100)
    assert not store.use_totp_step("carla", 100)  # the confirming code is used up
    assert not store.use_totp_step("carla", 99)
    assert store.use_totp_step("carla", 101)
    assert not store.use_totp_step("carla", 101)
    assert stat.S_IMODE((tmp_path / "accounts.json").stat().st_mode) == 0o600
    restarted = AccountStore(tmp_path, hasher=fast_hasher())
    account = restarted.get("carla")
    assert account is not None and account.totp_secret == secret and account.totp_step == 101
    assert not restarted.use_totp_step("carla", 101)
    restarted.reset_totp("carla")
    account = restarted.get("carla")
    assert account is not None and not account.has_totp
    assert "totp_secret" not in (tmp_path / "accounts.json").read_text()


# The web


async def staff_site(aiohttp_client: AiohttpClient, services: Services) -> Site:
    site = Site(await private_client(aiohttp_client, onionchat.staff.create_app(services)))
    await site.get("/login")
    return site


def pending_of(site: Site) -> totp.PendingSteps:
    server = site.client.server
    assert isinstance(server, TestServer)
    return server.app[keys.PENDING]


async def enrol_via_account_page(site: Site, services: Services, name: str) -> str:
    """Set up 2FA from the account page; returns the secret."""
    response, page = await site.get("/account/2fa")
    assert response.status == 200
    assert 'src="data:image/png;base64,' in page and "<svg" not in page
    match = SECRET_RE.search(page)
    assert match, "the secret is shown in text"
    secret = match.group(1).replace(" ", "")
    account = services.accounts.get(name)
    assert account is not None and not account.has_totp  # not before a code confirms it
    response, _ = await site.post("/account/2fa", {"code": code_at(secret), "current_password": PASSWORD})
    assert response.status == 303 and response.headers["Location"] == "/account/2fa"
    account = services.accounts.get(name)
    assert account is not None and account.totp_secret == secret
    _, page = await site.get("/account/2fa")
    assert "Two-factor login is on" in page
    return secret


async def test_enrolment_needs_a_right_code(new_staff: NewStaff, services: Services) -> None:
    carla = await new_staff("carla")
    _, page = await carla.get("/account/2fa")
    first = SECRET_RE.search(page)
    _, again = await carla.get("/account/2fa")
    second = SECRET_RE.search(again)
    assert first and second and first.group(1) == second.group(1)  # held in the session until confirmed
    response, page = await carla.post("/account/2fa", {"code": "000000", "current_password": PASSWORD})
    assert response.status == 403 and "Wrong code" in page
    account = services.accounts.get("carla")
    assert account is not None and not account.has_totp
    response, _ = await carla.post("/account/2fa", {"code": "000000"}, csrf="")
    assert response.status == 403


async def test_enrolment_on_the_account_page_needs_the_password(new_staff: NewStaff, services: Services) -> None:
    """A borrowed session alone cannot tie the account to someone else's phone."""
    carla = await new_staff("carla")
    _, page = await carla.get("/account/2fa")
    assert '<label for="current_password">' in page
    match = SECRET_RE.search(page)
    assert match
    secret = match.group(1).replace(" ", "")
    for password in ("", "not carla's password at all"):
        response, page = await carla.post("/account/2fa", {"code": code_at(secret), "current_password": password})
        assert response.status == 403 and "Your password is wrong" in page
    account = services.accounts.get("carla")
    assert account is not None and not account.has_totp
    response, _ = await carla.post("/account/2fa", {"code": code_at(secret), "current_password": PASSWORD})
    assert response.status == 303
    account = services.accounts.get("carla")
    assert account is not None and account.has_totp


async def test_login_with_a_code_and_replay_refused(aiohttp_client: AiohttpClient, new_staff: NewStaff,
                                                    services: Services) -> None:
    secret = await enrol_via_account_page(await new_staff("carla"), services, "carla")
    site = await staff_site(aiohttp_client, services)
    response, _ = await site.post("/login", {"username": "carla", "password": PASSWORD})
    assert response.status == 303 and response.headers["Location"] == "/login/code"
    for path in ("/", "/account", "/board"):  # not signed in until the code is right
        response, _ = await site.get(path)
        assert response.status == 303 and response.headers["Location"] == "/login"
    response, page = await site.get("/login/code")
    assert response.status == 200 and '<label for="code">' in page
    # The code that confirmed the enrolment is used up (its step, not the clock's: a step may
    # have ended since).
    account = services.accounts.get("carla")
    assert account is not None
    used = pyotp.TOTP(secret)
    response, page = await site.post("/login/code", {"code": used.at(account.totp_step * 30)})
    assert response.status == 403 and "already used" in page
    response, _ = await site.post("/login/code", {"code": used.at((account.totp_step + 1) * 30)})
    assert response.status == 303 and response.headers["Location"] == "/"
    response, page = await site.get("/")
    assert response.status == 200 and "Workspace" in page
    # Someone who watched that code cannot use it, not even after a restart.
    other = await staff_site(aiohttp_client, services)
    await other.post("/login", {"username": "carla", "password": PASSWORD})
    await other.get("/login/code")
    response, page = await other.post("/login/code", {"code": used.at((account.totp_step + 1) * 30)})
    assert response.status == 403 and "already used" in page
    restarted = AccountStore(services.config.data_dir, hasher=fast_hasher()).get("carla")
    assert restarted is not None and restarted.totp_step == account.totp_step + 1


async def test_codes_are_throttled_with_the_password(aiohttp_client: AiohttpClient, new_staff: NewStaff,
                                                     services: Services) -> None:
    secret = await enrol_via_account_page(await new_staff("carla"), services, "carla")
    site = await staff_site(aiohttp_client, services)
    await site.post("/login", {"username": "carla", "password": PASSWORD})
    await site.get("/login/code")
    for _ in range(services.config.staff.login_attempts):
        response, _ = await site.post("/login/code", {"code": "000000"})
        assert response.status == 403
    response, page = await site.post("/login/code", {"code": code_at(secret, 1)})
    assert response.status == 429 and "Too many" in page
    # A right password does not buy fresh guesses at the code.
    again = await staff_site(aiohttp_client, services)
    response, _ = await again.post("/login", {"username": "carla", "password": PASSWORD})
    assert response.status == 429


async def test_the_password_step_is_remembered_only_briefly(aiohttp_client: AiohttpClient, new_staff: NewStaff,
                                                            services: Services) -> None:
    secret = await enrol_via_account_page(await new_staff("carla"), services, "carla")
    site = await staff_site(aiohttp_client, services)
    await site.post("/login", {"username": "carla", "password": PASSWORD})
    await site.get("/login/code")
    for pending in pending_of(site)._pending.values():
        pending.until = time.monotonic() - 1
    response, _ = await site.post("/login/code", {"code": code_at(secret, 1)})
    assert response.status == 303 and response.headers["Location"] == "/login"
    response, _ = await site.get("/")
    assert response.headers["Location"] == "/login"


async def test_code_step_without_a_password_goes_back_to_login(aiohttp_client: AiohttpClient,
                                                               services: Services) -> None:
    site = await staff_site(aiohttp_client, services)
    for path in ("/login/code", "/login/enrol"):
        response, _ = await site.get(path)
        assert response.status == 303 and response.headers["Location"] == "/login"
        response, _ = await site.post(path, {"code": "123456"})
        assert response.status == 303 and response.headers["Location"] == "/login"


@pytest.fixture
def strict_services(config: Config) -> Services:
    """Services with staff.require_totp on."""
    return make_services(replace(config, staff=replace(config.staff, require_totp=True)))


async def test_required_2fa_sends_to_enrolment_and_nothing_else(aiohttp_client: AiohttpClient,
                                                                strict_services: Services) -> None:
    services = strict_services
    site = await staff_site(aiohttp_client, services)
    response, _ = await site.post("/login", {"username": "carla", "password": PASSWORD})
    assert response.status == 303 and response.headers["Location"] == "/login/enrol"
    for path in ("/", "/account", "/account/2fa", "/board", "/supervise", "/admin/staff"):
        response, _ = await site.get(path)
        assert response.status == 303 and response.headers["Location"] == "/login", path
    response, page = await site.get("/login/enrol")
    assert response.status == 200 and 'src="data:image/png;base64,' in page
    match = SECRET_RE.search(page)
    assert match
    secret = match.group(1).replace(" ", "")
    response, page = await site.post("/login/enrol", {"code": "000000"})
    assert response.status == 403 and "Wrong code" in page
    response, _ = await site.post("/login/enrol", {"code": code_at(secret)})
    assert response.status == 303 and response.headers["Location"] == "/"
    response, page = await site.get("/")
    assert response.status == 200 and "Workspace" in page
    account = services.accounts.get("carla")
    assert account is not None and account.totp_secret == secret
    # From now on the code step, and the enrolment code is used up.
    await site.post("/logout")
    again = await staff_site(aiohttp_client, services)
    response, _ = await again.post("/login", {"username": "carla", "password": PASSWORD})
    assert response.headers["Location"] == "/login/code"
    await again.get("/login/code")
    response, page = await again.post("/login/code", {"code": code_at(secret)})
    assert response.status == 403 and "already used" in page


async def test_admin_reset_of_2fa(aiohttp_client: AiohttpClient, new_staff: NewStaff, services: Services) -> None:
    services.accounts.add("ada", PASSWORD, Role.ADMIN)
    await enrol_via_account_page(await new_staff("carla"), services, "carla")
    ada = await new_staff("ada")
    await ada.get("/admin/staff/carla")
    response, _ = await ada.post("/admin/staff/carla/reset-2fa")
    assert response.status == 303
    account = services.accounts.get("carla")
    assert account is not None and not account.has_totp
    site = await staff_site(aiohttp_client, services)
    response, _ = await site.post("/login", {"username": "carla", "password": PASSWORD})
    assert response.headers["Location"] == "/"  # 2FA is not required here: straight in


async def test_disabled_between_password_and_code(aiohttp_client: AiohttpClient, new_staff: NewStaff,
                                                  services: Services) -> None:
    secret = await enrol_via_account_page(await new_staff("carla"), services, "carla")
    site = await staff_site(aiohttp_client, services)
    await site.post("/login", {"username": "carla", "password": PASSWORD})
    await site.get("/login/code")
    services.accounts.set_disabled("carla", disabled=True)
    response, _ = await site.post("/login/code", {"code": code_at(secret, 1)})
    assert response.status == 303 and response.headers["Location"] == "/login"
    response, _ = await site.get("/")
    assert response.headers["Location"] == "/login"


def test_require_totp_setting(tmp_path: Path) -> None:
    path = tmp_path / "onionchat.toml"
    path.write_text("[staff]\nrequire_totp = true\n")
    assert configmod.load(path).staff.require_totp is True
    assert configmod.Config().staff.require_totp is False
    assert "# require_totp = false" in configmod.render_template()
    path.write_text('[staff]\nrequire_totp = "yes"\n')
    with pytest.raises(Exception, match=r"staff\.require_totp must be true or false"):
        configmod.load(path)
