"""The onionchat command as an administrator uses it: init, staff, serve --local, bad config."""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ONIONCHAT = [sys.executable, "-m", "onionchat"]


def run(*args: str, stdin: str = "", env: dict[str, str] | None = None,
        cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*ONIONCHAT, *args], input=stdin, capture_output=True, text=True, timeout=60,
                          env={**os.environ, **(env or {})}, cwd=cwd, check=False)


def free_port() -> int:
    # Below Linux's ephemeral range, so no outgoing connection can take it meanwhile.
    for port in range(20000, 30000):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port")


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    result = run("init", "--data-dir", str(tmp_path / "data"))
    assert result.returncode == 0, result.stderr
    return tmp_path / "data"


def test_init_creates_a_private_directory_and_a_commented_config(data_dir: Path) -> None:
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    config = data_dir / "onionchat.toml"
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    text = config.read_text()
    assert "# message_length = 2000" in text and "# hold_seconds = 20" in text


def test_init_keeps_an_existing_config(data_dir: Path) -> None:
    config = data_dir / "onionchat.toml"
    config.write_text("[limits]\nmessage_length = 99\n")
    result = run("init", "--data-dir", str(data_dir))
    assert "already exists" in result.stdout and "99" in config.read_text()


def test_staff_commands(data_dir: Path) -> None:
    cfg = str(data_dir / "onionchat.toml")
    added = run("staff", "add", "carla", "--role", "supervisor", "--password-stdin", "--config", cfg,
                stdin="a long enough password\n")
    assert added.returncode == 0, added.stderr
    assert stat.S_IMODE((data_dir / "accounts.json").stat().st_mode) == 0o600
    listed = run("staff", "list", "--config", cfg)
    assert "carla\tsupervisor" in listed.stdout
    short = run("staff", "passwd", "carla", "--password-stdin", "--config", cfg, stdin="short\n")
    assert short.returncode == 2 and "at least 14 characters" in short.stderr
    assert run("staff", "passwd", "carla", "--password-stdin", "--config", cfg,
               stdin="another long password\n").returncode == 0
    assert run("staff", "remove", "carla", "--config", cfg).returncode == 0
    missing = run("staff", "remove", "carla", "--config", cfg)
    assert missing.returncode == 2 and missing.stderr.strip() == "onionchat: there is no account named carla"


def test_config_from_environment_then_working_directory(data_dir: Path, tmp_path: Path) -> None:
    cfg = data_dir / "onionchat.toml"
    run("staff", "add", "env", "--password-stdin", env={"ONIONCHAT_CONFIG": str(cfg)},
        stdin="a long enough password\n")
    assert "env\tcounsellor" in run("staff", "list", "--config", str(cfg)).stdout
    assert "env\tcounsellor" in run("staff", "list", cwd=data_dir).stdout


def test_a_bad_config_is_one_clear_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[limits]\nqueue_length = -1\n")
    result = run("serve", "--local", "--config", str(bad))
    assert result.returncode == 2
    assert result.stderr.strip() == "onionchat: limits.queue_length must be between 1 and 100000, not -1"
    assert "Traceback" not in result.stderr


def test_serve_local_prints_both_addresses_and_stops_cleanly(data_dir: Path) -> None:
    cfg = data_dir / "onionchat.toml"
    visitor_port, staff_port = free_port(), 0
    with socket.socket() as hold:  # keep the first port taken while choosing the second
        hold.bind(("127.0.0.1", visitor_port))
        staff_port = free_port()
    cfg.write_text(f"[server]\nvisitor_port = {visitor_port}\nstaff_port = {staff_port}\n")
    with subprocess.Popen([*ONIONCHAT, "serve", "--local", "--config", str(cfg)], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True) as proc:
        try:
            assert proc.stdout is not None and proc.stderr is not None
            lines = [proc.stdout.readline() for _ in range(3)]
            assert lines[0].strip() == f"visitor: http://127.0.0.1:{visitor_port}/"
            assert lines[1].split() == ["staff:", f"http://127.0.0.1:{staff_port}/"]
            assert "local-only" in lines[2]
            with urllib.request.urlopen(f"http://127.0.0.1:{visitor_port}/", timeout=5) as page:
                assert "Start chat" in page.read().decode()
            began = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=10) == 0
            assert time.monotonic() - began < 5
            log = proc.stderr.read()
            assert "Traceback" not in log and "stopped" in log
        finally:
            if proc.poll() is None:
                proc.kill()


def test_installed_templates_are_found_from_any_directory(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-c", "from onionchat.web.render import templates_dir; "
                             "print((templates_dir() / 'visitor' / 'landing.html').is_file())"],
                            cwd=tmp_path, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "True"
