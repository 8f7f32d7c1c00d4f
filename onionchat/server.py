"""Run both sites on their local ports, optionally behind Tor, until SIGTERM or Ctrl-C."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
import signal
import sys
from typing import Any, Final, TextIO

from aiohttp import web

from onionchat.app import Services, build_services, create_app
from onionchat.config import Config

log = logging.getLogger("onionchat")

def disable_core_dumps() -> None:
    """A crash must never write chat text in memory to disk: no core file, not dumpable."""
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            pr_set_dumpable = 4
            libc.prctl(pr_set_dumpable, 0, 0, 0, 0)


# No access log, ever: it would record every visitor request (and aiohttp's format has the
# client address and user agent). Tests run their servers with these same options.
PRIVATE_RUNNER: Final[dict[str, Any]] = {"access_log": None}


async def start_site(app: web.Application, host: str, port: int) -> web.AppRunner:
    """Listen with no access log and a bounded shutdown."""
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=2.0, **PRIVATE_RUNNER)
    await runner.setup()
    await web.TCPSite(runner, host, port, reuse_address=True).start()
    return runner


async def run(config: Config, *, local: bool, out: TextIO = sys.stdout,
              services: Services | None = None) -> None:
    """Serve until a stop signal; print where each site is reachable."""
    services = services or build_services(config)
    server = config.server
    runners = [await start_site(create_app(services, "visitor"), server.visitor_host, server.visitor_port),
               await start_site(create_app(services, "staff"), server.staff_host, server.staff_port)]
    print(f"visitor: http://{server.visitor_host}:{server.visitor_port}/", file=out, flush=True)
    print(f"staff:   http://{server.staff_host}:{server.staff_port}/", file=out, flush=True)
    if local:
        print("local-only mode: no Tor; these addresses work on this machine only", file=out, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        log.info("stopping: telling open chats that the service is closing")
        # Ending every chat wakes the held frames, which answer with the closing notice;
        # cleanup() waits (up to shutdown_timeout) for those answers before closing.
        services.chat.shutdown()
        for runner in runners:
            await runner.cleanup()
        log.info("stopped")
