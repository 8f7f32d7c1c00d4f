"""The audit log: every staff action with who, what and when; never text, nicknames or passwords."""

from __future__ import annotations

import json
import stat
import time
from pathlib import Path

import pyotp
import pytest

import onionchat.staff
from onionchat.accounts import Role
from onionchat.audit import AuditLog
from onionchat.staff.admin import AUDIT_PAGE
from onionchat.web.app import Services
from tests.conftest import PASSWORD, AiohttpClient, NewStaff, NewVisitor, Site, only, private_client, start_chat


@pytest.fixture
def admin_services(services: Services) -> Services:
    services.accounts.add("ada", PASSWORD, Role.ADMIN)
    return services


def actions(services: Services) -> list[tuple[str, str, str, str]]:
    """(who, action, chat, detail), oldest first."""
    return [(e.who, e.action, e.chat, e.detail) for e in reversed(services.audit.entries())]


async def stored(services: Services) -> str:
    await services.audit.flush()
    path = services.config.data_dir / "audit.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    return path.read_text()


async def test_logins_failures_and_logouts(aiohttp_client: AiohttpClient, admin_services: Services) -> None:
    site = Site(await private_client(aiohttp_client, onionchat.staff.create_app(admin_services)))
    await site.get("/login")
    await site.post("/login", {"username": "carla", "password": "carla's wrong password"})
    await site.post("/login", {"username": "my password typed here", "password": "oops"})
    await site.post("/login", {"username": "carla", "password": PASSWORD})
    await site.get("/")
    await site.post("/logout")
    assert actions(admin_services) == [("carla", "login_failed", "", "password"),
                                       ("", "login_failed", "", "unknown name"),
                                       ("carla", "login", "", ""), ("carla", "logout", "", "")]
    text = await stored(admin_services)
    for secret in (PASSWORD, "carla's wrong password", "my password typed here", "oops"):
        assert secret not in text  # neither passwords nor names that are no account


async def test_chat_actions_carry_the_id_only_while_the_chat_lasts_and_no_text(
        new_visitor: NewVisitor, new_staff: NewStaff, admin_services: Services) -> None:
    visitor = await new_visitor()
    passphrase = await start_chat(visitor, "Nadia")
    await visitor.get("/chat/compose")
    await visitor.post("/chat/send", {"text": "they took my passport"})
    cid = only(admin_services)
    carla = await new_staff("carla")
    await carla.post(f"/accept/{cid}")
    await carla.get(f"/chat/{cid}")
    await carla.post(f"/chat/{cid}/send", {"text": "you are safe to talk here"})
    await carla.post(f"/chat/{cid}/note", {"note": "staff-only remark", "kind": "note"})
    await carla.post(f"/chat/{cid}/urgent")
    got = [(who, action, chat) for who, action, chat, _ in actions(admin_services) if chat]
    assert got == [("carla", "accepted", cid), ("carla", "urgent", cid)]  # while the chat lasts
    assert cid in await stored(admin_services)
    await carla.post(f"/chat/{cid}/end")
    chat_entries = [e for e in admin_services.audit.entries() if e.action in ("accepted", "urgent", "ended")]
    assert [(e.who, e.action, e.chat) for e in reversed(chat_entries)] == [
        ("carla", "accepted", ""), ("carla", "urgent", ""), ("carla", "ended", "")]
    assert all(e.at % 3600 == 0 and e.when.endswith(":00") and "–" in e.when for e in chat_entries)
    text = await stored(admin_services)
    for private in ("Nadia", "passport", "safe to talk", "staff-only remark", passphrase, cid):
        assert private not in text
    assert set(json.loads(text)["entries"][0]) == {"at", "who", "action", "chat", "detail", "precision"}


async def test_account_canned_and_2fa_changes(new_staff: NewStaff, admin_services: Services) -> None:
    ada = await new_staff("ada")
    await ada.get("/admin/staff")
    await ada.post("/admin/staff/add", {"name": "erin", "role": "counsellor", "password": "erin's long password"})
    await ada.post("/admin/staff/erin/role", {"role": "supervisor"})
    await ada.post("/admin/staff/erin/max-chats", {"max_chats": "2"})
    await ada.post("/admin/staff/erin/password", {"password": "a new long password", "password_again":
                                                  "a new long password"})
    await ada.post("/admin/staff/erin/disable")
    await ada.post("/admin/staff/erin/enable")
    await ada.post("/admin/staff/ada/disable")  # refused: no audit line for what did not happen
    await ada.post("/admin/canned/add", {"lang": "en", "title": "Hello there", "text": "Welcome to the chat."})
    (reply,) = admin_services.canned.for_language("en")
    await ada.post(f"/admin/canned/{reply.id}/edit", {"lang": "nl", "title": "Hallo", "text": "Welkom."})
    await ada.post(f"/admin/canned/{reply.id}/delete")
    _, page = await ada.get("/account/2fa")
    secret = page.split('<code class="secret">')[1].split("<")[0].replace(" ", "")
    await ada.post("/account/2fa", {"code": pyotp.TOTP(secret).now(), "current_password": PASSWORD})
    await ada.post("/admin/staff/ada/reset-2fa")
    await ada.post("/admin/staff/erin/remove", {"confirm": "1"})
    got = [(who, action, detail) for who, action, _, detail in actions(admin_services) if who == "ada"]
    assert got == [("ada", "login", ""),
                   ("ada", "account_added", "erin (counsellor)"), ("ada", "role_set", "erin: supervisor"),
                   ("ada", "max_chats_set", "erin: 2"), ("ada", "password_reset", "erin"),
                   ("ada", "account_disabled", "erin"), ("ada", "account_enabled", "erin"),
                   ("ada", "canned_added", f"{reply.id} (en)"), ("ada", "canned_changed", f"{reply.id} (nl)"),
                   ("ada", "canned_deleted", f"{reply.id} (nl)"), ("ada", "2fa_enrolled", ""),
                   ("ada", "2fa_reset", "ada"), ("ada", "account_removed", "erin")]
    text = await stored(admin_services)
    for private in ("erin's long password", "a new long password", "Welcome to the chat", "Welkom", secret):
        assert private not in text


async def test_audit_page_lists_newest_first_in_pages(new_staff: NewStaff, admin_services: Services) -> None:
    for n in range(AUDIT_PAGE):
        admin_services.audit.record("carla", "accepted", chat=f"c{n:03d}")
    ada = await new_staff("ada")
    response, page = await ada.get("/admin/audit")
    assert response.status == 200 and "Page 1 of 2" in page
    assert page.index("c099") < page.index("c098")  # newest first (after ada's own login)
    assert time.strftime("%Y-%m-%d", time.gmtime()) in page
    _, older = await ada.get("/admin/audit?page=2")
    assert "c000" in older and "c099" not in older
    response, _ = await ada.get("/admin/audit?page=zzz")
    assert response.status == 200


async def test_flushed_at_shutdown_and_kept_only_so_many_days(aiohttp_client: AiohttpClient,
                                                              admin_services: Services) -> None:
    client = await private_client(aiohttp_client, onionchat.staff.create_app(admin_services))
    admin_services.audit.record("sam", "urgent", chat="abc")
    admin_services.audit.record("sam", "logout")
    await client.close()  # the cleanup context writes what is left
    path = admin_services.config.data_dir / "audit.json"
    entries = json.loads(path.read_text())["entries"]
    assert entries[-2]["who"] == "sam" and entries[-2]["at"] % 3600 == 0  # actions on chats: to the hour
    assert entries[-1]["action"] == "logout" and entries[-1]["precision"] == 60  # the rest: to the minute
    old = time.time() - 91 * 86400
    entries.insert(0, {"at": old, "who": "sam", "action": "ended", "chat": "old", "detail": ""})
    path.write_text(json.dumps({"version": 1, "entries": entries}))
    restarted = AuditLog(admin_services.config.data_dir, retention_days=90)
    # After a restart every chat is over: no id is kept.
    assert [(e.action, e.chat) for e in restarted.entries()] == [("logout", ""), ("urgent", "")]


async def test_older_files_are_made_private(tmp_path: Path) -> None:
    """An audit.json of an earlier version, with chat ids and minutes, loses both at the next start."""
    at = 1_767_225_600 + 17 * 3600 + 23 * 60  # some day at 17:23 UTC
    (tmp_path / "audit.json").write_text(json.dumps({"version": 1, "entries": [
        {"at": at, "who": "carla", "action": "accepted", "chat": "Xy12_ab34cd", "detail": ""},
        {"at": at + 60, "who": "carla", "action": "ended", "chat": "Xy12_ab34cd", "detail": "staff_ended"},
        {"at": at + 120, "who": "carla", "action": "logout", "chat": "", "detail": ""}]}))
    log = AuditLog(tmp_path, retention_days=100_000)
    await log.flush()  # written at once, without waiting for a new entry
    text = (tmp_path / "audit.json").read_text()
    assert "Xy12_ab34cd" not in text
    stored = json.loads(text)["entries"]
    assert [(e["action"], e["at"] % 86400) for e in stored] == [
        ("accepted", 17 * 3600), ("ended", 17 * 3600), ("logout", 17 * 3600 + 25 * 60)]
    assert log.entries()[-1].when.endswith("17:00–18:00")
    kept = AuditLog(tmp_path, retention_days=100_000, keep_chat_ids=True, chat_time="minute")
    assert [e.at % 86400 for e in kept.entries()][-1] == 17 * 3600  # what is gone stays gone


def test_a_damaged_audit_file_is_reported(tmp_path: Path) -> None:
    (tmp_path / "audit.json").write_text('{"entries": [{"who": 1}]}')
    with pytest.raises(Exception, match="damaged"):
        AuditLog(tmp_path, 90)


async def test_transfer_requeue_and_block_are_audited_without_reasons(
        new_visitor: NewVisitor, new_staff: NewStaff, admin_services: Services) -> None:
    visitor = await new_visitor()
    await start_chat(visitor, "Mira")
    cid = only(admin_services)
    carla = await new_staff("carla")
    dirk = await new_staff("dirk")
    await carla.post(f"/accept/{cid}")
    await carla.get(f"/chat/{cid}")
    response, _ = await carla.post(f"/chat/{cid}/transfer", {"to": "dirk", "reason": "she speaks of her brother"})
    assert response.status == 303
    await dirk.get(f"/chat/{cid}")
    await dirk.post(f"/chat/{cid}/transfer", {"to": "queue"})
    await carla.get("/")
    await carla.post(f"/accept/{cid}")
    await carla.get(f"/chat/{cid}")
    got = [(who, action, detail) for who, action, chat, detail in actions(admin_services) if chat == cid]
    assert got == [("carla", "accepted", ""), ("carla", "transferred", "dirk"), ("dirk", "requeued", ""),
                   ("carla", "accepted", "")]
    await carla.post(f"/chat/{cid}/block")
    assert ("carla", "blocked", "", "") in actions(admin_services)  # the chat is over: no id
    text = await stored(admin_services)
    assert "brother" not in text and "Mira" not in text
