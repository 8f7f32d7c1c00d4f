"""The reference: a bare aiohttp app answering every GET with constant bytes.

``python -m bench.reference PORT SIZE [LOOP]``: LOOP is an onionchat server.event_loop value
(auto, uvloop, asyncio), so that the reference runs on the same event loop as the server.
"""

from __future__ import annotations

import asyncio
import signal
import sys

from aiohttp import web

from onionchat.eventloop import loop_factory


def make_app(size: int) -> web.Application:
    """One route that returns ``size`` constant bytes as text/html, like a cached frame."""
    body = (b"<!doctype html><p>" + b"x" * size)[:size]

    async def constant(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="text/html", charset="utf-8")

    app = web.Application()
    app.router.add_get("/{tail:.*}", constant)
    return app


async def serve(port: int, size: int) -> None:
    """Serve on 127.0.0.1:``port`` without an access log until SIGTERM."""
    runner = web.AppRunner(make_app(size), access_log=None, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    print("ready", flush=True)
    await stop.wait()
    await runner.cleanup()


if __name__ == "__main__":
    with asyncio.Runner(loop_factory=loop_factory(sys.argv[3] if len(sys.argv) > 3 else "auto")) as runner:
        runner.run(serve(int(sys.argv[1]), int(sys.argv[2])))
