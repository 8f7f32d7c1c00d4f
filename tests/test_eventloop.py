"""The event loop: uvloop where it is installed, asyncio's own otherwise, and the log names it."""

from __future__ import annotations

import asyncio
import sys

import pytest

from onionchat import eventloop
from onionchat.errors import ConfigError


@pytest.mark.skipif(sys.platform != "linux", reason="uvloop is a dependency on Linux only")
def test_auto_runs_on_uvloop_on_linux_where_it_is_a_dependency() -> None:
    factory = eventloop.loop_factory("auto")
    assert factory is not None, "uvloop is installed with onionchat on Linux"
    loop = factory()
    try:
        assert eventloop.describe(loop).startswith("uvloop 0.")
    finally:
        loop.close()


def test_asyncio_is_asyncios_own_loop() -> None:
    assert eventloop.loop_factory("asyncio") is None
    with asyncio.Runner(loop_factory=eventloop.loop_factory("asyncio")) as runner:
        assert eventloop.describe(runner.get_loop()) == "asyncio"


def test_without_uvloop_auto_falls_back_and_uvloop_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # import uvloop now raises ImportError
    assert eventloop.loop_factory("auto") is None
    with pytest.raises(ConfigError, match="uvloop is not installed"):
        eventloop.loop_factory("uvloop")
    with pytest.raises(ConfigError, match=r"server\.event_loop"):
        eventloop.loop_factory("trio")


async def test_the_tests_run_on_the_servers_loop() -> None:
    expected = "uvloop" if eventloop.loop_factory("auto") is not None else "asyncio"
    assert eventloop.describe(asyncio.get_running_loop()).split()[0] == expected
