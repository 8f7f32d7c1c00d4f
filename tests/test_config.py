"""Configuration: defaults, the commented template, and one clear line for every bad value."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from onionchat import config as configmod
from onionchat.config import Config, load, render_template
from onionchat.errors import ConfigError


def test_the_template_lists_every_setting_and_its_default_round_trips(tmp_path: Path) -> None:
    text = render_template()
    uncommented = re.sub(r"^# (\w+ = )", r"\1", text, flags=re.MULTILINE)
    path = tmp_path / "onionchat.toml"
    path.write_text(uncommented)
    loaded = load(path)
    assert loaded.server == Config().server and loaded.limits == Config().limits
    assert loaded.poll == Config().poll and loaded.tor == Config().tor
    for section, cls in configmod.SECTIONS.items():
        for name in cls.__dataclass_fields__:
            assert f"{name} = " in text, f"{section}.{name} missing from the template"


@pytest.mark.parametrize(("toml", "message"), [
    ("[limits]\nmessage_length = 0\n", "limits.message_length must be between 1 and 100000, not 0"),
    ("[limits]\nmessage_length = \"long\"\n", "limits.message_length must be a whole number"),
    ("[poll]\nmode = \"fast\"\n", "poll.mode must be one of hold, interval, not 'fast'"),
    ("[tor]\nstaff_client_auth = 1\n", "tor.staff_client_auth must be true or false"),
    ("[limits]\nmesage_length = 5\n", "unknown setting limits.mesage_length"),
    ("[limitz]\n", "unknown section [limitz]"),
    ("[server]\nstaff_port = 8080\n", "server.staff_port must differ from server.visitor_port"),
    ("[tor]\nextra_torrc = \"x\"\n", "tor.extra_torrc must be a list of texts"),
    ("[server\n", "is not valid TOML"),
])
def test_bad_values_name_the_setting(tmp_path: Path, toml: str, message: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError) as error:
        load(path)
    assert message in str(error.value)
    assert "\n" not in str(error.value).strip()


def test_missing_file_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="onionchat init"):
        load(tmp_path / "nope.toml")


def test_data_dir_defaults_to_the_config_files_directory(tmp_path: Path) -> None:
    path = tmp_path / "onionchat.toml"
    path.write_text("")
    assert load(path).data_dir == tmp_path


def test_config_lookup_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert configmod.find_config(None) is None
    (tmp_path / "onionchat.toml").write_text("")
    assert configmod.find_config(None) == tmp_path / "onionchat.toml"
    monkeypatch.setenv("ONIONCHAT_CONFIG", "/elsewhere.toml")
    assert configmod.find_config(None) == Path("/elsewhere.toml")
    assert configmod.find_config("given.toml") == Path("given.toml")


def test_template_is_valid_toml() -> None:
    assert tomllib.loads(render_template()) == {k: {} for k in configmod.SECTIONS}
