"""Run both sites on their local ports, optionally behind Tor, until SIGTERM or Ctrl-C."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import resource
import shutil
import signal
import sys
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Final, TextIO

from aiohttp import web, web_protocol

from onionchat import staff, visitor
from onionchat.config import Config
from onionchat.eventloop import describe
from onionchat.web import keys
from onionchat.web.app import Services, build_services
from onionchat.web.headers import NO_STORE, SECURITY_HEADERS
from onionchat.web.proxy import CircuitSite

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


# Every held frame is an open connection (a visitor's, a counsellor's board and chats), and
# a slow or idle client holds one too. The usual soft limit of 1,024 open files would turn
# visitors away long before [limits] does; the hard limit is the administrator's to set.
OPEN_FILES_WANTED: Final = 65_536


def raise_open_file_limit(wanted: int = OPEN_FILES_WANTED) -> int:
    """Raise the soft limit on open files to ``wanted`` (at most the hard limit); the limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def allow_open_files(config: Config) -> int:
    """Raise the open-file limit; warn when it stays below what a full house may hold."""
    files = raise_open_file_limit()
    log.debug("open files allowed: %d", files)
    # A generous estimate: frames and spare connections per conversation, the waiting line, staff.
    needed = config.limits.conversations * 4 + config.limits.queue_length * 2 + 256
    if files < needed:
        log.warning("only %d open files are allowed, fewer than a full house may need (%d); raise the "
                    "hard limit (systemd: LimitNOFILE)", files, needed)
    return files


FILES_RESERVED: Final = 256  # open files kept for everything but connections: data files, tor, threads


def fit_connections(services: Services, files: int) -> None:
    """Keep both sites' connection ceilings below the open-file limit, with files to spare.

    Connections must leave files for everything else (data files, tor's control socket,
    threads). At its ceiling a site stops accepting and newcomers wait in the listen queue
    (web/acceptor.py), so a flood of connections never makes the process run out of files.
    """
    staff, visitor_site = services.staff_listener, services.visitor_listener
    staff.max_open = max(16, min(staff.max_open, files // 8))
    room = max(16, files - staff.max_open - FILES_RESERVED)
    if visitor_site.max_open > room:
        log.warning("limits.open_connections (%d) is more than the open-file limit leaves room for: the visitor "
                    "site keeps at most %d connections open (raise LimitNOFILE)", visitor_site.max_open, room)
        visitor_site.max_open = room


class LoopErrors:
    """The event loop's error handler: what an attack can trigger is counted, not logged each time.

    When the process runs out of open files, asyncio's accept loop reports "socket.accept()
    out of system resource" for every attempt (640,000 lines in two minutes were seen): here
    the first one is logged, then one line a minute with how many there were. Anything else
    is logged by its message and exception type only (no traceback: it could quote a request).
    """

    def __init__(self) -> None:
        self.accept_failures = 0
        self._reporting = False

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        """The hook asyncio calls with an error it cannot raise anywhere."""
        message = str(context.get("message", ""))
        if message.startswith("socket.accept() out of system resource"):
            self.accept_failures += 1
            if not self._reporting:
                self._reporting = True
                self._report()
                loop.call_later(ACCEPT_REPORT_SECONDS, self._report_again, loop)
            return
        exc = context.get("exception")
        log.error("event loop: %s%s", message, f" ({type(exc).__name__})" if exc is not None else "")

    def _report(self) -> None:
        log.warning("cannot accept new connections: out of open files or memory (%d time(s)); connections "
                    "wait until some close (raise LimitNOFILE, or lower [limits])", self.accept_failures)
        self.accept_failures = 0

    def _report_again(self, loop: asyncio.AbstractEventLoop) -> None:
        if self.accept_failures:
            self._report()
            loop.call_later(ACCEPT_REPORT_SECONDS, self._report_again, loop)
        else:
            self._reporting = False


ACCEPT_REPORT_SECONDS: Final = 60.0
CLOSE_QUEUE: Final = 1000  # circuits waiting for the tor thread's CLOSECIRCUIT

# No access log, ever: it would record every visitor request (and aiohttp's format has the
# client address and user agent). Tests run their servers with these same options.
PRIVATE_RUNNER: Final[dict[str, Any]] = {"access_log": None}

_aiohttp_handle_error = web_protocol.RequestHandler.handle_error


def _protocol_error(self: web_protocol.RequestHandler, request: web.BaseRequest, status: int = 500,
                    exc: BaseException | None = None, message: str | None = None) -> web.StreamResponse:
    """The answer to a request aiohttp refuses before routing: no echoed text, our headers.

    Its own page quotes the bytes sent and names the aiohttp version, and no middleware or
    response hook runs for it (the fuzz proof found this with an over-long URL).
    """
    response = _aiohttp_handle_error(self, request, status, exc, None)
    if isinstance(response, web.Response) and status != 500:
        response.body = b""
    response.headers.update(SECURITY_HEADERS)
    response.headers["Cache-Control"] = NO_STORE
    return response


def harden_protocol_errors() -> None:
    """Give requests aiohttp refuses itself (line too long, bad method) the security headers."""
    web_protocol.RequestHandler.handle_error = _protocol_error  # type: ignore[method-assign]


async def start_site(app: web.Application, host: str, port: int) -> web.AppRunner:
    """Listen with no access log, a bounded shutdown, and no room for idle or dribbling clients.

    Connections are CircuitProtocol handlers (web/proxy.py): they read tor's PROXY line when
    the site's listener expects one, and cut off a request that has not arrived whole
    within ``[limits] request_seconds``.
    """
    harden_protocol_errors()
    # aiohttp's keep-alive timer also runs from a connection's start, so it closes a
    # connection that never sends a byte; its default for an AppRunner is an hour.
    handler_args: dict[str, Any] = {"keepalive_timeout": app[keys.CONFIG].limits.connection_idle_seconds,
                                    **PRIVATE_RUNNER}
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=2.0, **handler_args)
    await runner.setup()
    await CircuitSite(runner, host, port, app[keys.LISTENER], handler_args).start()
    return runner


def expects_proxy_lines(config: Config, tor_config: Config | None) -> bool:
    """Whether connections will start with tor's PROXY line (server.proxy_protocol; see its doc).

    'auto': yes in launch mode (we configure tor so) and torrc mode (torrc.example does);
    not in control mode, whose ADD_ONION cannot export circuit ids, nor without Tor.
    """
    setting = config.server.proxy_protocol
    if setting != "auto":
        return setting == "on"
    return tor_config is not None and tor_config.tor.mode in ("launch", "torrc")


if TYPE_CHECKING:
    from onionchat.tor import publish


def resolve_tor_mode(config: Config, local: bool, out: TextIO) -> Config | None:
    """The config to publish with, or None for local-only ('--local', or 'auto' without tor)."""
    if local:
        return None
    if config.tor.mode != "auto":
        return config
    if shutil.which(config.tor.tor_binary) is None:
        print("tor is not installed, so nothing is published: running local-only. To publish the onion "
              "services: sudo apt-get install tor, then start onionchat again.", file=out, flush=True)
        return None
    return replace(config, tor=replace(config.tor, mode="launch"))


async def run(config: Config, *, local: bool, out: TextIO = sys.stdout,
              services: Services | None = None) -> None:
    """Serve until a stop signal; print where each site is reachable."""
    services = services or build_services(config)
    server = config.server
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    log.info("starting on the %s event loop", describe(loop))
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.set_exception_handler(LoopErrors())
    fit_connections(services, resource.getrlimit(resource.RLIMIT_NOFILE)[0])
    tor_config = resolve_tor_mode(config, local, out)
    circuit_ids = expects_proxy_lines(config, tor_config)
    for listener in (services.visitor_listener, services.staff_listener):
        listener.expect_proxy = circuit_ids
    if tor_config is not None and not circuit_ids:
        # Behind Tor without circuit ids one budget would be every visitor's at once.
        services.circuits.local_budgets = False
        log.warning("tor does not tell onionchat which circuit a visitor came on (tor.mode = %s%s): budgets "
                    "per circuit are off, and a flood can only be met by the global limits and tor's own "
                    "defences; tor.mode = launch has them (see docs/abuse.md)", tor_config.tor.mode,
                    ", server.proxy_protocol = off" if config.server.proxy_protocol == "off" else "")
    closing: queue.Queue[str] = queue.Queue(CLOSE_QUEUE)

    def close_circuit(circuit: str) -> None:
        # Called on the event loop when a circuit goes on over budget: the tor thread sends
        # CLOSECIRCUIT; if it is behind, the request is dropped (our side already cut it off).
        with contextlib.suppress(queue.Full):
            closing.put_nowait(circuit)

    services.circuits.on_close(close_circuit)

    def forget_circuits() -> None:
        # From the tor thread: a relaunched tor numbers its circuits from 1 again.
        loop.call_soon_threadsafe(services.circuits.forget_all)
    runners = [await start_site(visitor.create_app(services), server.visitor_host, server.visitor_port),
               await start_site(staff.create_app(services), server.staff_host, server.staff_port)]
    handle: publish.TorHandle | None = None
    try:
        if tor_config is None:
            print(f"visitor: http://{server.visitor_host}:{server.visitor_port}/", file=out, flush=True)
            print(f"staff:   http://{server.staff_host}:{server.staff_port}/", file=out, flush=True)
            print("local-only mode: no Tor; these addresses work on this machine only", file=out, flush=True)
        else:
            # stem and friends only when publishing: a faster --local start
            from onionchat.tor.publish import progress_printer, start_tor

            starting = asyncio.ensure_future(start_tor(
                tor_config, server.visitor_port, server.staff_port, progress=progress_printer(sys.stderr),
                closing=closing, on_new_tor=forget_circuits))
            stopping = asyncio.ensure_future(stop.wait())
            # Ctrl-C or SIGTERM during a long bootstrap stops at once (start_tor cleans up).
            await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if not starting.done():
                starting.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await starting
                return
            stopping.cancel()
            handle = starting.result()
            print(f"visitor: http://{handle.addresses.visitor}/", file=out, flush=True)
            print(f"staff:   http://{handle.addresses.staff}/", file=out, flush=True)
            print(f"(served locally on {server.visitor_host}:{server.visitor_port} and "
                  f"{server.staff_host}:{server.staff_port})", file=out, flush=True)
        await stop.wait()
    finally:
        log.info("stopping: telling open chats that the service is closing")
        # Ending every chat wakes the held frames, which answer with the closing notice;
        # cleanup() waits (up to shutdown_timeout) for those answers before closing.
        services.chat.shutdown()
        if handle is not None:
            await handle.close()
        for runner in runners:
            await runner.cleanup()
        log.info("stopped")
