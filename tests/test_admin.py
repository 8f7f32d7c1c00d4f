"""Roles on every staff route, the admin's staff pages, the last-admin rule, and canned replies."""

from __future__ import annotations

import json
import re
import stat
from html.parser import HTMLParser
from pathlib import Path

import pyotp
import pytest
from aiohttp import web

import onionchat.staff
from onionchat import cli
from onionchat.accounts import AccountStore, Role, effective_max_chats
from onionchat.canned import CannedReplies
from onionchat.staff.access import signed_in
from onionchat.web.app import Services
from tests.conftest import (
    PASSWORD,
    AiohttpClient,
    NewStaff,
    NewVisitor,
    OpenChatFactory,
    Site,
    fast_hasher,
    private_client,
    start_chat,
)
from tests.test_security import assert_safe

# Routes anyone may reach: the login steps (the code and enrolment steps lead back to the
# password without one), the stylesheet, logout (which only ends the caller's own session),
# the language links (they change only how this browser's pages are worded) and the site's
# plain icon, which browsers fetch by themselves.
PUBLIC = {"/login", "/login/code", "/login/enrol", "/logout", "/lang/{code}", "/favicon.ico"}
STATIC = "/static/"  # stylesheets: the same for everyone
# The least role each part of the staff site needs; everything else needs a counsellor.
ROLE_BY_PREFIX = (("/admin/", Role.ADMIN), ("/supervise", Role.SUPERVISOR), ("/stats", Role.SUPERVISOR))
FORBIDDEN = "You are not allowed to do this."
SAMPLE = {"cid": "nochat", "name": "carla", "rid": "noreply"}


def required_role(path: str) -> Role:
    for prefix, role in ROLE_BY_PREFIX:
        if path.startswith(prefix):
            return role
    return Role.COUNSELLOR


def app_routes(app: web.Application) -> list[tuple[str, str]]:
    """(method, path) of every route of ``app`` that needs a login, with sample values in the variable parts."""
    found = []
    for route in app.router.routes():
        if route.method == "HEAD":
            continue  # aiohttp's automatic twin of a GET: the same handler
        assert route.resource is not None
        if route.resource.canonical in PUBLIC or route.resource.canonical.startswith(STATIC):
            continue
        path = re.sub(r"\{(\w+)[^}]*\}", lambda m: SAMPLE.get(m.group(1), "x"), route.resource.canonical)
        found.append((route.method, path))
    return found


@pytest.fixture
def admin_services(services: Services) -> Services:
    services.accounts.add("ada", PASSWORD, Role.ADMIN)
    return services


async def staff_site(aiohttp_client: AiohttpClient, services: Services) -> Site:
    site = Site(await private_client(aiohttp_client, onionchat.staff.create_app(services)))
    await site.get("/login")
    return site


async def request(site: Site, method: str, path: str) -> tuple[int, str, str]:
    if method == "GET":
        response, page = await site.get(path)
    else:
        response, page = await site.post(path)
    return response.status, response.headers.get("Location", ""), page


async def guard_problems(aiohttp_client: AiohttpClient, services: Services, app: web.Application) -> list[str]:
    """Every route of ``app`` that someone reaches without a login or without its role."""
    routes = app_routes(app)
    problems = []
    anonymous = Site(await private_client(aiohttp_client, app))
    await anonymous.get("/login")
    for method, path in routes:
        status, location, _ = await request(anonymous, method, path)
        if (status, location) != (303, "/login"):
            problems.append(f"{method} {path} without a login: {status}")
    for name, role in (("carla", Role.COUNSELLOR), ("sam", Role.SUPERVISOR), ("ada", Role.ADMIN)):
        site = Site(await private_client(aiohttp_client, app))
        await site.get("/login")
        response, _ = await site.post("/login", {"username": name, "password": PASSWORD})
        assert response.status == 303
        await site.get("/")
        for method, path in routes:
            if role.rank < required_role(path).rank:
                # With a valid CSRF token: the role check alone must refuse it.
                status, _, page = await request(site, method, path)
                if status != 403 or FORBIDDEN not in page:
                    problems.append(f"{method} {path} reached by {role.value}: {status}")
            elif method == "GET":
                status, location, page = await request(site, method, path)
                if location == "/login" or FORBIDDEN in page:
                    problems.append(f"{method} {path} refused to {role.value}")
    return problems


async def test_every_staff_route_needs_login_and_its_role(aiohttp_client: AiohttpClient,
                                                          admin_services: Services) -> None:
    app = onionchat.staff.create_app(admin_services)
    routes = app_routes(app)
    assert ("GET", "/admin/staff") in routes and ("POST", "/admin/staff/carla/role") in routes
    assert {"/login", "/login/code", "/static/style.css"} <= {r.resource.canonical for r in app.router.routes()
                                                               if r.resource is not None}
    assert not {path for _, path in routes} & PUBLIC
    assert await guard_problems(aiohttp_client, admin_services, app) == []
    account = admin_services.accounts.get("carla")  # the refused POSTs changed nothing
    assert account is not None and account.role is Role.COUNSELLOR and not account.disabled


async def test_a_route_without_a_guard_is_caught(aiohttp_client: AiohttpClient, admin_services: Services) -> None:
    async def careless(request: web.Request) -> web.Response:
        return web.Response(text="staff data")

    async def half_guarded(request: web.Request) -> web.Response:
        signed_in(request)  # any counsellor, but the path is an admin one
        return web.Response(text="admin data")

    app = onionchat.staff.create_app(admin_services)
    app.router.add_get("/careless", careless)
    app.router.add_post("/admin/half", half_guarded)
    problems = await guard_problems(aiohttp_client, admin_services, app)
    assert any(p.startswith("GET /careless without a login") for p in problems)
    assert any(p.startswith("POST /admin/half reached by counsellor") for p in problems)
    assert len(problems) == 3  # /careless, and /admin/half for the counsellor and the supervisor


async def test_admin_link_only_for_admins(new_staff: NewStaff, admin_services: Services) -> None:
    _, board = await (await new_staff("sam")).get("/")
    assert 'href="/admin/staff"' not in board and 'href="/account"' in board
    _, board = await (await new_staff("ada")).get("/")
    assert 'href="/admin/staff"' in board


async def test_add_account(new_staff: NewStaff, admin_services: Services) -> None:
    ada = await new_staff("ada")
    _, page = await ada.get("/admin/staff")
    for field in ("name", "role", "password"):
        assert f'<label for="{field}">' in page
    response, _ = await ada.post("/admin/staff/add", {"name": "Erin", "role": "supervisor",
                                                      "password": "erin's long password"})
    assert response.status == 303 and response.headers["Location"] == "/admin/staff/erin"
    account = admin_services.accounts.get("erin")
    assert account is not None and account.role is Role.SUPERVISOR
    path = admin_services.config.data_dir / "accounts.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "erin's long password" not in path.read_text()
    response, page = await ada.post("/admin/staff/add", {"name": "erin", "role": "counsellor",
                                                         "password": "another long password"})
    assert response.status == 409 and "already an account named erin" in page
    response, page = await ada.post("/admin/staff/add", {"name": "fred", "role": "counsellor", "password": "short"})
    assert response.status == 409 and "at least 14 characters" in page
    response, page = await ada.post("/admin/staff/add", {"name": "fred", "role": "king",
                                                         "password": "a long enough password"})
    assert response.status == 409 and admin_services.accounts.get("fred") is None
    response, page = await ada.post("/admin/staff/add", {"name": "<b>x</b>", "role": "counsellor",
                                                         "password": "a long enough password"})
    assert response.status == 409 and "<b>" not in page


async def test_admin_posts_need_csrf(new_staff: NewStaff, admin_services: Services) -> None:
    ada = await new_staff("ada")
    response, _ = await ada.post("/admin/staff/carla/disable", csrf="")
    assert response.status == 403
    response, _ = await ada.post("/admin/staff/carla/disable", csrf="forged")
    assert response.status == 403
    account = admin_services.accounts.get("carla")
    assert account is not None and not account.disabled


async def test_disable_and_enable(aiohttp_client: AiohttpClient, new_staff: NewStaff,
                                  admin_services: Services) -> None:
    dirk = await new_staff("dirk")
    ada = await new_staff("ada")
    response, _ = await ada.post("/admin/staff/dirk/disable")
    assert response.status == 303 and response.headers["Location"] == "/admin/staff/dirk"
    response, _ = await dirk.get("/")
    assert response.status == 303 and response.headers["Location"] == "/login"  # the session ends at once
    site = await staff_site(aiohttp_client, admin_services)
    response, _ = await site.post("/login", {"username": "dirk", "password": PASSWORD})
    assert response.status == 403
    _, page = await ada.get("/admin/staff")
    assert "disabled" in page
    await ada.post("/admin/staff/dirk/enable")
    response, _ = await site.post("/login", {"username": "dirk", "password": PASSWORD})
    assert response.status == 303


async def test_reset_password(aiohttp_client: AiohttpClient, new_staff: NewStaff, admin_services: Services) -> None:
    ada = await new_staff("ada")
    new = "a brand new long password"
    response, page = await ada.post("/admin/staff/dirk/password", {"password": new, "password_again": "other"})
    assert response.status == 409 and "differ" in page
    response, _ = await ada.post("/admin/staff/dirk/password", {"password": new, "password_again": new})
    assert response.status == 303
    site = await staff_site(aiohttp_client, admin_services)
    response, _ = await site.post("/login", {"username": "dirk", "password": PASSWORD})
    assert response.status == 403
    response, _ = await site.post("/login", {"username": "dirk", "password": new})
    assert response.status == 303


async def test_own_password_change_needs_the_current_one(aiohttp_client: AiohttpClient, new_staff: NewStaff,
                                                         admin_services: Services) -> None:
    carla = await new_staff("carla")
    _, page = await carla.get("/account")
    for field in ("current_password", "new_password", "new_password_again"):
        assert f'<label for="{field}">' in page
    new = "carla's brand new password"
    response, page = await carla.post("/account/password", {"current_password": "wrong password!!",
                                                             "new_password": new, "new_password_again": new})
    assert response.status == 403 and "current password is wrong" in page
    response, page = await carla.post("/account/password", {"current_password": PASSWORD,
                                                            "new_password": "short", "new_password_again": "short"})
    assert response.status == 400 and "at least 14" in page
    response, _ = await carla.post("/account/password", {"current_password": PASSWORD,
                                                         "new_password": new, "new_password_again": new})
    assert response.status == 303
    _, page = await carla.get("/account?done=password")
    assert "Your password was changed." in page
    site = await staff_site(aiohttp_client, admin_services)
    response, _ = await site.post("/login", {"username": "carla", "password": new})
    assert response.status == 303


async def test_set_role(new_staff: NewStaff, admin_services: Services) -> None:
    dirk = await new_staff("dirk")
    response, _ = await dirk.get("/supervise")
    assert response.status == 403
    ada = await new_staff("ada")
    response, _ = await ada.post("/admin/staff/dirk/role", {"role": "supervisor"})
    assert response.status == 303
    # A new role signs the account out: whoever held its session does not keep it with more rights.
    response, _ = await dirk.get("/supervise")
    assert response.status == 303 and response.headers["Location"] == "/login"
    dirk = await new_staff("dirk")
    response, _ = await dirk.get("/supervise")
    assert response.status == 200
    response, _ = await ada.post("/admin/staff/ada/role", {"role": "supervisor"})
    assert response.status == 409  # the last admin
    response, _ = await ada.post("/admin/staff/dirk/role", {"role": "root"})
    assert response.status == 409


async def test_per_account_chat_limit(new_staff: NewStaff, admin_services: Services) -> None:
    ada = await new_staff("ada")
    config = admin_services.config
    response, _ = await ada.post("/admin/staff/carla/max-chats", {"max_chats": "1"})
    assert response.status == 303
    account = admin_services.accounts.get("carla")
    assert account is not None and account.max_chats == 1 and effective_max_chats(account, config) == 1
    for bad in ("0", "51", "two", "-1", "١"):
        response, _ = await ada.post("/admin/staff/carla/max-chats", {"max_chats": bad})
        assert response.status == 409, bad
    await ada.post("/admin/staff/carla/max-chats", {"max_chats": ""})
    account = admin_services.accounts.get("carla")
    assert account is not None and account.max_chats is None
    assert effective_max_chats(account, config) == config.staff.max_chats
    admin_services.accounts.set_max_chats("dirk", 7)
    reloaded = AccountStore(config.data_dir, hasher=fast_hasher())
    dirk = reloaded.get("dirk")
    assert dirk is not None and dirk.max_chats == 7


async def test_remove_needs_a_tick(new_staff: NewStaff, admin_services: Services) -> None:
    ada = await new_staff("ada")
    response, _ = await ada.post("/admin/staff/dirk/remove")
    assert response.status == 409 and admin_services.accounts.get("dirk") is not None
    response, _ = await ada.post("/admin/staff/dirk/remove", {"confirm": "1"})
    assert response.status == 303 and response.headers["Location"] == "/admin/staff"
    assert admin_services.accounts.get("dirk") is None
    response, _ = await ada.get("/admin/staff/dirk")
    assert response.status == 404


async def test_the_last_admin_cannot_go(new_staff: NewStaff, admin_services: Services) -> None:
    ada = await new_staff("ada")
    for path, data in (("/admin/staff/ada/role", {"role": "supervisor"}), ("/admin/staff/ada/disable", {}),
                       ("/admin/staff/ada/remove", {"confirm": "1"})):
        response, page = await ada.post(path, data)
        assert response.status == 409 and "no active admin" in page, path
    account = admin_services.accounts.get("ada")
    assert account is not None and account.role is Role.ADMIN and not account.disabled
    # With a second admin, stepping down is fine, and the admin pages close at once.
    await ada.post("/admin/staff/sam/role", {"role": "admin"})
    response, _ = await ada.post("/admin/staff/ada/role", {"role": "counsellor"})
    assert response.status == 303
    response, page = await ada.get("/admin/staff")
    assert response.status == 403 and FORBIDDEN in page
    sam = await new_staff("sam")
    response, page = await sam.post("/admin/staff/sam/disable")
    assert response.status == 409


def test_last_admin_rule_in_the_store(tmp_path: Path) -> None:
    store = AccountStore(tmp_path, hasher=fast_hasher())
    store.add("carla", PASSWORD, Role.COUNSELLOR)
    store.remove("carla")  # no admin before, none after: the CLI's first steps are not hindered
    store.add("ada", PASSWORD, Role.ADMIN)
    store.add("bo", PASSWORD, Role.ADMIN)
    store.set_disabled("bo", disabled=True)
    with pytest.raises(Exception, match="no active admin"):
        store.set_role("ada", Role.COUNSELLOR)
    store.set_disabled("bo", disabled=False)
    store.set_role("ada", Role.COUNSELLOR)
    account = store.get("ada")
    assert account is not None and account.role is Role.COUNSELLOR


# Canned replies


async def test_canned_replies_crud_per_language(new_staff: NewStaff, admin_services: Services) -> None:
    ada = await new_staff("ada")
    _, page = await ada.get("/admin/canned")
    for field in ("lang", "title", "text"):
        assert f'<label for="{field}">' in page
    for lang, title, text in (("en", "Confidentiality", "What you tell us stays here."),
                              ("nl", "Vertrouwelijk", "Wat je ons vertelt, blijft hier."),
                              ("en", "Busy", "Many people are waiting.\r\nPlease stay."),
                              ("uk", "<b>Зачекайте</b>", "Будь ласка, зачекайте.")):
        response, _ = await ada.post("/admin/canned/add", {"lang": lang, "title": title, "text": text})
        assert response.status == 303 and response.headers["Location"] == "/admin/canned"
    canned = admin_services.canned
    assert [r.title for r in canned.for_language("en")] == ["Busy", "Confidentiality"]
    assert [r.title for r in canned.for_language("nl")] == ["Vertrouwelijk"]
    assert canned.for_language("ar") == []
    busy = canned.for_language("en")[0]
    assert busy.text == "Many people are waiting.\nPlease stay."
    _, page = await ada.get("/admin/canned")
    assert "&lt;b&gt;Зачекайте&lt;/b&gt;" in page and "<b>Зачекайте" not in page
    response, page = await ada.get(f"/admin/canned/{busy.id}")
    assert response.status == 200 and "Many people are waiting." in page
    response, _ = await ada.post(f"/admin/canned/{busy.id}/edit", {"lang": "es", "title": "Ocupado",
                                                                   "text": "Hay mucha gente esperando."})
    assert response.status == 303
    assert canned.get(busy.id) is not None and [r.title for r in canned.for_language("es")] == ["Ocupado"]
    for bad in ({"lang": "xx", "title": "t", "text": "t"}, {"lang": "en", "title": "", "text": "t"},
                {"lang": "en", "title": "t", "text": "   "}, {"lang": "en", "title": "t", "text": "x" * 2001}):
        response, _ = await ada.post("/admin/canned/add", bad)
        assert response.status == 409, bad
    response, _ = await ada.post(f"/admin/canned/{busy.id}/delete")
    assert response.status == 303 and canned.get(busy.id) is None
    response, _ = await ada.post(f"/admin/canned/{busy.id}/delete")
    assert response.status == 409
    path = admin_services.config.data_dir / "canned.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    stored = json.loads(path.read_text())
    assert len(stored["replies"]) == 3
    reloaded = CannedReplies(admin_services.config.data_dir)
    assert [r.title for r in reloaded.for_language("en")] == ["Confidentiality"]


async def test_counsellor_inserts_an_admins_canned_reply(new_staff: NewStaff,
                                                         admin_services: Services, open_chat: OpenChatFactory) -> None:
    ada = await new_staff("ada")
    await ada.get("/admin/canned")
    await ada.post("/admin/canned/add", {"lang": "en", "title": "Confidentiality",
                                         "text": "What you tell us stays here."})
    (reply,) = admin_services.canned.for_language("en")
    chat = await open_chat()
    carla, cid = chat.staff, chat.cid
    _, compose = await carla.get(f"/chat/{cid}/compose")
    assert f'value="{reply.id}"' in compose


# The same on the command line


def test_cli_disable_enable_role_and_reset_2fa(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "onionchat.toml"
    config.write_text("")
    store = AccountStore(tmp_path, hasher=fast_hasher())
    store.add("ada", PASSWORD, Role.ADMIN)
    store.add("carla", PASSWORD, Role.COUNSELLOR)
    store.enable_totp("carla", "JBSWY3DPEHPK3PXP", 1)

    def run(*args: str) -> int:
        return cli.main(["staff", *args, "--config", str(config)])

    assert run("list") == 0 and "carla\tcounsellor\t2FA" in capsys.readouterr().out
    assert run("disable", "carla") == 0
    assert run("role", "carla", "supervisor") == 0
    assert run("reset-2fa", "carla") == 0
    carla = AccountStore(tmp_path, hasher=fast_hasher()).get("carla")
    assert carla is not None and carla.disabled and carla.role is Role.SUPERVISOR and not carla.has_totp
    assert run("enable", "carla") == 0
    capsys.readouterr()
    assert run("role", "ada", "counsellor") == 2  # the last admin stays
    assert "no active admin" in capsys.readouterr().err
    assert run("disable", "nobody") == 2
    assert stat.S_IMODE((tmp_path / "accounts.json").stat().st_mode) == 0o600


# Every page of this part: safe headers, no script, a label on every control


class Controls(HTMLParser):
    """Form controls and the ids that labels point at."""

    def __init__(self) -> None:
        super().__init__()
        self.controls: list[str] = []
        self.labelled: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "label" and a.get("for"):
            self.labelled.add(a["for"] or "")
        if tag in ("input", "select", "textarea") and a.get("type") not in ("hidden", "submit"):
            self.controls.append(a.get("id") or f"<{tag} name={a.get('name')} without id>")


def unlabelled(page: str) -> list[str]:
    parser = Controls()
    parser.feed(page)
    return [c for c in parser.controls if c not in parser.labelled]


async def test_pages_are_safe_and_labelled(aiohttp_client: AiohttpClient, new_staff: NewStaff,
                                           admin_services: Services) -> None:
    admin_services.canned.add("en", "Hello", "Welcome.")
    (reply,) = admin_services.canned.for_language("en")
    ada = await new_staff("ada")
    await ada.post("/admin/staff/carla/disable")  # something in the audit log
    pages = []
    for path in ("/account", "/account/2fa", "/admin/staff", "/admin/staff/carla", "/admin/canned",
                 f"/admin/canned/{reply.id}", "/admin/audit"):
        pages.append((path, *await ada.get(path)))
    pages.append(("refused", *await ada.post("/admin/staff/ada/disable")))
    _, page = await ada.get("/account/2fa")
    secret = page.split('<code class="secret">')[1].split("<")[0].replace(" ", "")
    await ada.post("/account/2fa", {"code": pyotp.TOTP(secret).now(), "current_password": PASSWORD})
    pages.append(("/account/2fa on", *await ada.get("/account/2fa")))
    site = await staff_site(aiohttp_client, admin_services)
    await site.post("/login", {"username": "ada", "password": PASSWORD})
    pages.append(("/login/code", *await site.get("/login/code")))
    for name, response, body in pages:
        assert response.status in (200, 409), name
        assert_safe(response, body)
        assert unlabelled(body) == [], name


async def test_visitor_site_has_no_account_or_admin_pages(new_visitor: NewVisitor) -> None:
    visitor = await new_visitor()
    for path in ("/admin/staff", "/admin/audit", "/admin/canned", "/account", "/account/2fa", "/login",
                 "/login/code"):
        response, _ = await visitor.get(path)
        assert response.status == 404, path


async def test_an_accounts_own_chat_limit_applies_when_accepting(new_visitor: NewVisitor, new_staff: NewStaff,
                                                                 admin_services: Services) -> None:
    ada = await new_staff("ada")
    await ada.get("/admin/staff/carla")
    await ada.post("/admin/staff/carla/max-chats", {"max_chats": "1"})
    carla = await new_staff("carla")
    for _ in range(2):
        await start_chat(await new_visitor())
    first, second = (c.id for c in admin_services.chat.queue())
    response, _ = await carla.post(f"/accept/{first}")
    assert response.status == 303
    response, page = await carla.post(f"/accept/{second}")
    assert response.status == 409 and "as many chats as allowed" in page


async def test_a_password_reset_signs_the_person_out_everywhere(
        new_staff: NewStaff, services: Services) -> None:
    services.accounts.add("alex", PASSWORD, Role.ADMIN)
    dirk = await new_staff("dirk")
    admin_site = await new_staff("alex")
    await admin_site.get("/admin/staff/dirk")
    response, _ = await admin_site.post("/admin/staff/dirk/password",
                                        {"password": "a brand new password", "password_again": "a brand new password"})
    assert response.status == 303
    response, _ = await dirk.get("/")
    assert response.status == 303 and response.headers["Location"] == "/login"
    response, _ = await admin_site.get("/")
    assert response.status == 200
