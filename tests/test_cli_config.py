"""--config in every position of every subcommand, and saying which data directory a command changes.

Every subcommand is found by walking the parser, so a new one fails here until it is listed.
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from onionchat import cli
from tests.liveserver import child_env, free_port, onionchat_command, wait_until, write_config

PASSWORD = "a long enough password"

# Each subcommand: the arguments after it, and what must hold in the named data directory after.
ACTIONS: dict[tuple[str, ...], list[str]] = {
    ("serve",): ["--local"],
    ("staff", "add"): ["zoe", "--password-stdin"],
    ("staff", "list"): [],
    ("staff", "passwd"): ["carla", "--password-stdin"],
    ("staff", "disable"): ["carla"],
    ("staff", "enable"): ["carla"],
    ("staff", "role"): ["carla", "supervisor"],
    ("staff", "reset-2fa"): ["carla"],
    ("staff", "remove"): ["carla"],
    ("onion", "show"): ["--no-qr"],
    ("staff-key", "add"): ["laptop"],
    ("staff-key", "list"): [],
    ("staff-key", "remove"): ["laptop"],
    ("systemd-unit",): [],
    ("init",): [],  # refuses --config (it makes the config file): see below
}


def subcommands(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Every runnable command path of ``parser``."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield prefix
        return
    for name, child in subs[0].choices.items():
        yield from subcommands(child, (*prefix, name))


def positions(path: tuple[str, ...], rest: list[str], config: str) -> dict[str, list[str]]:
    """The command line with --config before the command, between command and action, and at the end."""
    out = {"before": ["--config", config, *path, *rest], "after": [*path, *rest, "--config", config]}
    if len(path) == 2:
        out["between"] = [path[0], "--config", config, path[1], *rest]
    return out


@pytest.fixture
def places(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """A named data directory with its config, and an unnamed default one that must stay empty."""
    named = tmp_path / "named"
    elsewhere = tmp_path / "xdg"
    monkeypatch.setenv("XDG_DATA_HOME", str(elsewhere))
    monkeypatch.delenv("ONIONCHAT_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    assert cli.main(["init", "--data-dir", str(named)]) == 0
    write_config(named / "onionchat.toml", {"tor": {"mode": "control"}})  # systemd-unit shows it
    return named, elsewhere


def accounts(data: Path) -> dict[str, dict[str, object]]:
    path = data / "accounts.json"
    return json.loads(path.read_text())["accounts"] if path.exists() else {}


def run(argv: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    monkeypatch.setattr(sys, "stdin", io.StringIO(f"{PASSWORD}\n"))
    try:
        code = cli.main(argv)
    except SystemExit as exc:  # argparse refusing the command line
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out + out.err


def test_every_subcommand_is_covered() -> None:
    assert set(subcommands(cli.build_parser())) == set(ACTIONS)


@pytest.mark.parametrize("where", ["before", "between", "after"])
def test_config_works_in_every_position(where: str, places: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    named, elsewhere = places
    config = str(named / "onionchat.toml")
    assert run(["staff", "add", "carla", "--password-stdin", "--config", config], monkeypatch, capsys)[0] == 0
    for path, rest in ACTIONS.items():
        argv = positions(path, rest, config).get(where)
        if argv is None or path in (("serve",), ("init",)):
            continue  # serve runs for real below; init refuses
        code, output = run(argv, monkeypatch, capsys)
        assert code == 0, f"{' '.join(argv)}: {output}"
        assert "using the data directory" not in output, argv  # the person named it
        if path == ("staff", "add"):
            assert "zoe" in accounts(named)
        elif path == ("staff", "list"):
            assert "carla\tcounsellor" in output and "zoe" in output
        elif path == ("staff", "role"):
            assert accounts(named)["carla"]["role"] == "supervisor"
        elif path == ("onion", "show"):
            assert (named / "onion" / "visitor.key").is_file()
        elif path == ("staff-key", "add"):
            assert "laptop" in (named / "onion" / "staff-clients.json").read_text()
        elif path == ("systemd-unit",):
            assert "debian-tor" in output  # tor.mode = "control" came from the named config
    assert "carla" not in accounts(named)  # 'staff remove carla' ran last on the named directory
    assert not elsewhere.exists(), sorted(str(p) for p in elsewhere.rglob("*"))


def test_init_refuses_config_in_every_position(places: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    named, _ = places
    for argv in positions(("init",), ["--data-dir", str(named / "other")], str(named / "onionchat.toml")).values():
        code, output = run(argv, monkeypatch, capsys)
        assert code == 2 and "name its directory with --data-dir" in output
    assert not (named / "other").exists()


def test_two_different_configs_are_refused(places: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    named, _ = places
    config = str(named / "onionchat.toml")
    code, output = run(["--config", config, "staff", "add", "x", "--config", "/elsewhere.toml"], monkeypatch, capsys)
    assert code == 2 and "different files" in output and "x" not in accounts(named)
    code, _ = run(["--config", config, "staff", "list", "--config", config], monkeypatch, capsys)
    assert code == 0  # the same file twice is fine


@pytest.mark.parametrize("where", ["before", "after"])
def test_serve_uses_the_named_config_in_every_position(where: str, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    config = data / "onionchat.toml"
    port = free_port()
    write_config(config, {"server": {"visitor_port": port, "staff_port": free_port()}})
    env = child_env(tmp_path)
    argv = positions(("serve",), ["--local"], str(config))[where]
    log = tmp_path / "serve.log"
    with log.open("wb") as out, subprocess.Popen([*onionchat_command(), *argv], stdout=out, stderr=subprocess.STDOUT,
                                                 stdin=subprocess.DEVNULL, env=env, cwd=tmp_path) as proc:
        try:
            wait_until(lambda: "visitor:" in log.read_text() or proc.poll() is not None, 30, "serve printing")
            assert f"visitor: http://127.0.0.1:{port}/" in log.read_text()
        finally:
            proc.terminate()
            proc.wait(15)
    assert "using the data directory" not in log.read_text()
    assert not (tmp_path / "xdg").exists()


@pytest.mark.parametrize("argv", [["staff", "add", "zoe", "--password-stdin"], ["onion", "show", "--no-qr"],
                                  ["staff-key", "add", "laptop"], ["staff", "passwd", "carla", "--password-stdin"]])
def test_a_command_that_writes_where_nobody_said_names_the_directory(
        argv: list[str], places: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    named, elsewhere = places
    run(["staff", "add", "carla", "--password-stdin"], monkeypatch, capsys)  # into the default directory
    code, output = run(argv, monkeypatch, capsys)
    assert code == 0, output
    assert f"using the data directory {elsewhere / 'onionchat'}" in output
    monkeypatch.chdir(named)  # ./onionchat.toml is found: said too, with where it came from
    run(["staff", "add", "carla", "--password-stdin"], monkeypatch, capsys)
    code, output = run(argv, monkeypatch, capsys)
    assert code == 0 and f"using the data directory {named} (onionchat.toml in the current directory" in output
    code, output = run(["staff", "list"], monkeypatch, capsys)  # reading only: nothing to say
    assert "using the data directory" not in output
