"""Which asyncio event loop runs the server: uvloop where it is installed, else asyncio's own."""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Callable
from types import ModuleType

from onionchat.errors import ConfigError

LoopFactory = Callable[[], asyncio.AbstractEventLoop]
CHOICES = ("auto", "uvloop", "asyncio")


def _uvloop() -> ModuleType | None:
    try:
        return importlib.import_module("uvloop")
    except ImportError:  # not installed (it is a dependency on Linux only), or it does not load here
        return None


def loop_factory(choice: str = "auto") -> LoopFactory | None:
    """The factory of the loop ``choice`` names; None means asyncio's default loop.

    "auto" takes uvloop when it can be imported: the same server answers about 15-30 % more
    polls per second on it (bench/README.md). "uvloop" insists on it; "asyncio" never uses it.
    """
    if choice not in CHOICES:
        raise ConfigError(f"server.event_loop must be one of {', '.join(CHOICES)}, not {choice!r}")
    if choice == "asyncio":
        return None
    uvloop = _uvloop()
    if uvloop is None:
        if choice == "uvloop":
            raise ConfigError("server.event_loop is 'uvloop' but uvloop is not installed (pip install uvloop), "
                              "or set it to 'auto'")
        return None
    factory: LoopFactory = uvloop.new_event_loop
    return factory


def describe(loop: asyncio.AbstractEventLoop) -> str:
    """The running loop as the start-up log line names it, e.g. 'uvloop 0.23.0' or 'asyncio'."""
    module = type(loop).__module__.split(".")[0]
    if module == "uvloop":
        uvloop = _uvloop()
        return f"uvloop {getattr(uvloop, '__version__', '')}".strip()
    return "asyncio"
