"""Staff accounts: argon2id, length limits, rehash on login, atomic owner-only storage."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from onionchat.accounts import PASSWORD_MAX, AccountStore, Role, make_hasher
from onionchat.errors import AccountError
from tests.conftest import PASSWORD, fast_hasher


def test_accounts_are_stored_owner_only_without_the_password(tmp_path: Path) -> None:
    store = AccountStore(tmp_path, hasher=fast_hasher())
    store.add("carla", PASSWORD, Role.COUNSELLOR)
    path = tmp_path / "accounts.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    assert PASSWORD not in text and "$argon2id$" in text
    assert json.loads(text)["accounts"]["carla"]["role"] == "counsellor"
    assert [p.name for p in tmp_path.iterdir()] == ["accounts.json"]  # no temp file left behind


def test_verify(tmp_path: Path) -> None:
    store = AccountStore(tmp_path, hasher=fast_hasher())
    store.add("carla", PASSWORD, Role.ADMIN)
    account = store.verify("carla", PASSWORD)
    assert account is not None and account.role is Role.ADMIN
    assert store.verify("carla", PASSWORD + "x") is None
    assert store.verify("nobody", PASSWORD) is None


def test_password_length_is_capped_before_hashing(tmp_path: Path) -> None:
    store = AccountStore(tmp_path, hasher=fast_hasher(), password_min=14)
    with pytest.raises(AccountError, match="at least 14"):
        store.add("carla", "short", Role.COUNSELLOR)
    with pytest.raises(AccountError, match=f"at most {PASSWORD_MAX}"):
        store.add("carla", "x" * (PASSWORD_MAX + 1), Role.COUNSELLOR)
    store.add("carla", PASSWORD, Role.COUNSELLOR)
    assert store.verify("carla", PASSWORD + "x" * 10_000) is None


def test_names_are_checked(tmp_path: Path) -> None:
    store = AccountStore(tmp_path, hasher=fast_hasher())
    for bad in ("", "Carla", "a b", "<script>", "x" * 33):
        with pytest.raises(AccountError):
            store.add(bad, PASSWORD, Role.COUNSELLOR)
    store.add("carla", PASSWORD, Role.COUNSELLOR)
    with pytest.raises(AccountError, match="already"):
        store.add("carla", PASSWORD, Role.COUNSELLOR)


def test_login_rehashes_when_parameters_change(tmp_path: Path) -> None:
    AccountStore(tmp_path, hasher=fast_hasher()).add("carla", PASSWORD, Role.COUNSELLOR)
    production = AccountStore(tmp_path, hasher=make_hasher())
    assert production.verify("carla", PASSWORD) is not None
    stored = json.loads((tmp_path / "accounts.json").read_text())["accounts"]["carla"]["password_hash"]
    assert stored.startswith("$argon2id$v=19$m=65536,t=4,p=2$")
    assert production.verify("carla", PASSWORD) is not None


def test_remove_and_passwd_and_reload(tmp_path: Path) -> None:
    server_view = AccountStore(tmp_path, hasher=fast_hasher())
    cli = AccountStore(tmp_path, hasher=fast_hasher())
    cli.add("carla", PASSWORD, Role.COUNSELLOR)
    assert server_view.reload_if_changed() is True
    assert server_view.get("carla") is not None
    cli.set_password("carla", PASSWORD + "2")
    cli.remove("carla")
    server_view.reload_if_changed()
    assert server_view.get("carla") is None
    with pytest.raises(AccountError):
        cli.remove("carla")
