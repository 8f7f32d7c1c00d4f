"""End to end over a private Tor network on 127.0.0.1: onionchat publishes, a chat runs over Tor.

Issue 3's proof: launch mode joined to the network, a real chat through Tor clients (one with
client authorization for the staff onion, and once in chromium with JavaScript off), 0xF4 for
an unauthorised client, no staff route on the visitor onion, the same addresses after a
restart, recovery after the launched tor is killed, and control mode. Timings are printed.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest
from aiohttp_socks import ProxyConnectionError, ProxyConnector, ProxyError, ProxyTimeoutError

from tests.liveserver import add_staff, child_env, onionchat_command, write_config
from tests.tornet import LOOPBACK, Node, TorNetwork

pytestmark = pytest.mark.tor

PASSWORD = "a long enough counsellor password"
ONION_LINE = re.compile(r"^(visitor|staff):\s+http://([a-z2-7]{56}\.onion)/\s*$", re.MULTILINE)
AUTH_PRIVATE = re.compile(r"^([a-z2-7]{56}:descriptor:x25519:[A-Z2-7]{52})$", re.MULTILINE)
CSRF = re.compile(r'name="_csrf" value="([^"]+)"')
ACCEPT = re.compile(r'action="/accept/([^"]+)"')
SOCKS_CLIENT_AUTH_MISSING = 0xF4  # tor's extended SOCKS errors (Tor Browser shows a key prompt)
SOCKS_CLIENT_AUTH_BAD = 0xF5  # a key, but not one the service accepts
FRESH_ONION_TIMEOUT = 60.0  # first fetch of a just-published onion: tor retries failed rendezvous paths
SESSIONS_PER_CIRCUIT = 12  # circuits.sessions of the onionchat under test
STRIKES = 12  # circuits.strikes of the onionchat under test (other budgets as by default)
T = TypeVar("T")


# -- the network and onionchat as subprocesses ------------------------------------------------


@dataclass
class Timings:
    values: dict[str, float] = field(default_factory=dict)

    def note(self, name: str, seconds: float) -> None:
        self.values.setdefault(name, round(seconds, 2))


@dataclass
class Onionchat:
    """One `onionchat serve` (without --local) in a subprocess, with its data directory."""

    home: Path
    net: TorNetwork
    mode: str = "launch"
    tor_settings: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, dict[str, Any]] = field(default_factory=dict)  # other sections of the config
    process: subprocess.Popen[bytes] | None = None
    visitor: str = ""
    staff: str = ""
    started_in: float = 0.0

    def __post_init__(self) -> None:
        self.data_dir = self.home / "data"
        self.data_dir.mkdir(parents=True, mode=0o700, exist_ok=True)
        self.config_path = self.data_dir / "onionchat.toml"
        self.log_path = self.home / "serve.log"
        self.env = child_env(self.home)
        tor: dict[str, Any] = {"mode": self.mode, "bootstrap_timeout": 120, **self.tor_settings}
        if self.mode == "launch":
            tor["extra_torrc"] = self.net.join_lines()
        self.server_settings: dict[str, Any] = {
            "visitor_host": LOOPBACK, "visitor_port": self.net.ports(), "staff_host": LOOPBACK,
            "staff_port": self.net.ports(), "data_dir": str(self.data_dir), "log_level": "INFO"}
        write_config(self.config_path, {
            "server": self.server_settings,
            "poll": {"hold_seconds": 20},
            "tor": tor,
            **self.settings,
        })

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def cli(self, *args: str, stdin: str = "") -> str:
        result = subprocess.run([*onionchat_command(), *args, "--config", str(self.config_path)], input=stdin.encode(),
                                capture_output=True, env=self.env, cwd=self.home, timeout=60, check=False)
        out = result.stdout.decode(errors="replace")
        assert result.returncode == 0, f"onionchat {' '.join(args)} failed: {out}{result.stderr.decode()}"
        return out

    def start(self, timeout: float = 150.0) -> None:
        started = time.monotonic()
        with self.log_path.open("ab") as log_file:
            self.process = subprocess.Popen([*onionchat_command(), "serve", "--config", str(self.config_path)],
                                            stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
                                            env=self.env, cwd=self.home)
        offset = len(self.log)
        deadline = time.monotonic() + timeout
        while True:
            found = dict(ONION_LINE.findall(self.log[offset:]))
            if "visitor" in found and "staff" in found:
                self.visitor, self.staff = found["visitor"], found["staff"]
                break
            if self.process.poll() is not None:
                raise AssertionError(f"onionchat serve exited with {self.process.returncode}:\n{self.log}")
            if time.monotonic() > deadline:
                raise AssertionError(f"onionchat serve printed no onion addresses in {timeout:.0f} s:\n{self.log}")
            time.sleep(0.1)  # polling the log with a deadline
        self.started_in = time.monotonic() - started

    def tor_pid(self) -> int:
        """PID of the tor this onionchat launched, checked to be its child before anyone kills it."""
        assert self.process is not None
        pid = int((self.data_dir / "tor" / "tor.pid").read_text().split()[0])
        stat = Path(f"/proc/{pid}/stat").read_text()
        assert int(stat.rsplit(")", 1)[1].split()[1]) == self.process.pid, "tor.pid is not our child"
        return pid

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"onionchat did not stop within 30 s:\n{self.log}") from None
        assert code == 0, f"onionchat exited with {code}:\n{self.log}"
        assert "Traceback" not in self.log, self.log
        # stem logs every control command at DEBUG (and sets its own level when imported): none of it here.
        assert " DEBUG stem" not in self.log and " INFO stem" not in self.log, self.log


@dataclass
class World:
    """Everything the tests of this module share, built once."""

    net: TorNetwork
    app: Onionchat
    anon: Node  # a Tor client without any staff key
    desk: Node  # a counsellor's Tor client whose ClientOnionAuthDir holds the staff key
    desk_auth: Path  # that ClientOnionAuthDir
    timings: Timings
    visitor_cookies: dict[str, str] = field(default_factory=dict)
    visitor_text: str = ""


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[World]:
    if shutil.which("tor") is None or shutil.which("tor-gencert") is None:
        pytest.skip("tor is not installed (apt-get install tor)")
    base = tmp_path_factory.mktemp("tor")
    net = TorNetwork(base=base / "net")
    timings = Timings()
    app: Onionchat | None = None
    try:
        t0 = time.monotonic()
        net.start()
        timings.note("network ready (3 authorities, 3 relays)", time.monotonic() - t0)
        anon = net.add_client("anon", control=True, wait=False)
        # Small budgets per circuit, so that the test of circuit ids reaches them quickly.
        app = Onionchat(home=base / "onionchat", net=net,
                        settings={"circuits": {"sessions": SESSIONS_PER_CIRCUIT, "strikes": STRIKES}})
        add_staff(app.config_path, "carla", "counsellor", PASSWORD, app.env)
        out = app.cli("staff-key", "add", "carla-desk")
        match = AUTH_PRIVATE.search(out)
        assert match, out
        auth_dir = base / "desk-auth"
        auth_dir.mkdir(mode=0o700)
        (auth_dir / "carla-desk.auth_private").write_text(match.group(1) + "\n")
        desk = net.add_client("desk", auth_dir=auth_dir, control=True, wait=False)
        # Right after the consensus lists every relay, the first circuits can still fail for a
        # while: a client that bootstraps is the proof that the network carries traffic.
        net.wait_ready(anon, 120)
        timings.note("network usable (a first client bootstrapped)", time.monotonic() - t0)
        app.start()
        timings.note("onionchat start to both onions published (launch, bootstrap included)", app.started_in)
        published = re.search(r"onion services published in ([\d.]+) s", app.log)
        if published:
            timings.note("tor start to both onions' first descriptor upload", float(published.group(1)))
        net.wait_ready(desk)
        yield World(net=net, app=app, anon=anon, desk=desk, desk_auth=auth_dir, timings=timings)
    finally:
        if app is not None:
            app.stop()
        net.stop()
        lines = [f"tor timing: {name}: {seconds:.2f} s" for name, seconds in timings.values.items()]
        (base / "timings.txt").write_text("\n".join(lines) + "\n")
        capture = request.config.pluginmanager.get_plugin("capturemanager")
        if capture is not None:
            with capture.global_and_fixture_disabled():
                print("\n" + "\n".join(lines))


# -- HTTP over Tor -----------------------------------------------------------------------------


def socks_session(node: Node, cookies: dict[str, str] | None = None, *,
                  one_request_per_connection: bool = False) -> aiohttp.ClientSession:
    """An HTTP client whose every connection goes through ``node``'s SocksPort (names resolved by tor).

    ``one_request_per_connection``: no keep-alive, so that a connection the server cuts off
    is an error, not a request aiohttp quietly sends again on a new connection.
    """
    connector = ProxyConnector.from_url(f"socks5://{LOOPBACK}:{node.socks_port}", rdns=True,
                                        force_close=one_request_per_connection)
    session = aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=25))
    if cookies:
        session.cookie_jar.update_cookies(cookies)
    return session


async def retry(what: str, attempt: Callable[[], Awaitable[T]], timeout: float) -> T:
    """Retry while the descriptor propagates (SOCKS 0xF0/0xF2, closed circuits), up to ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await attempt()
        except (aiohttp.ClientError, ProxyError, ProxyConnectionError, ProxyTimeoutError, OSError,
                TimeoutError) as exc:
            if time.monotonic() > deadline:
                raise AssertionError(f"{what}: still failing after {timeout:.0f} s: {exc!r}") from exc
        await asyncio.sleep(0.5)  # pause between attempts of a polling loop with a deadline


async def get(session: aiohttp.ClientSession, url: str) -> tuple[int, str]:
    async with session.get(url, allow_redirects=False) as resp:
        return resp.status, await resp.text()


async def post(session: aiohttp.ClientSession, url: str, data: dict[str, str]) -> tuple[int, str]:
    async with session.post(url, data=data, allow_redirects=False) as resp:
        return resp.status, resp.headers.get("Location", "")


async def settled_socks_reply(node: Node, host: str, timeout: float = 30.0) -> int:
    """The SOCKS reply for ``host`` once tor has its descriptor (0xF0 and other transient ones retried)."""
    deadline = time.monotonic() + timeout
    while True:
        code = await socks_reply(node, host)
        if code in (0, SOCKS_CLIENT_AUTH_MISSING, SOCKS_CLIENT_AUTH_BAD) or time.monotonic() > deadline:
            return code
        await asyncio.sleep(0.5)  # pause between attempts of a polling loop with a deadline


async def socks_reply(node: Node, host: str, port: int = 80) -> int:
    """The reply code tor's SocksPort gives for CONNECT host:port (0 = success)."""
    reader, writer = await asyncio.open_connection(LOOPBACK, node.socks_port)
    try:
        writer.write(b"\x05\x01\x00")
        await writer.drain()
        assert await reader.readexactly(2) == b"\x05\x00"
        name = host.encode()
        writer.write(b"\x05\x01\x00\x03" + bytes([len(name)]) + name + port.to_bytes(2, "big"))
        await writer.drain()
        head = await asyncio.wait_for(reader.readexactly(2), 60)
        return head[1]
    finally:
        writer.close()


async def new_identity(node: Node) -> None:
    """SIGNAL NEWNYM, as Tor Browser's New Identity does: the client forgets cached onion descriptors.

    A tor client that tried an onion while it was down keeps its stale descriptor and, in a
    network of six HSDirs, may not ask them again for minutes; a visitor would press New
    Identity (or wait). Our recovery is the service side: republishing, which this measures.
    """
    replies = await control(node, "SIGNAL NEWNYM")
    assert replies.count("250") >= 2, replies


async def control(node: Node, command: str) -> str:
    """Send one command to ``node``'s control port (cookie authentication); tor's replies."""
    cookie = (node.directory / "control_auth_cookie").read_bytes().hex()
    reader, writer = await asyncio.open_connection(LOOPBACK, node.control_port)
    try:
        writer.write(f"AUTHENTICATE {cookie}\r\n{command}\r\nQUIT\r\n".encode())
        await writer.drain()
        return (await asyncio.wait_for(reader.read(), 10)).decode()
    finally:
        writer.close()


async def wait_for_log(app: Onionchat, text: str, count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while app.log.count(text) < count:
        assert time.monotonic() < deadline, f"no {text!r} in {timeout:.0f} s:\n{app.log}"
        await asyncio.sleep(0.1)  # polling the log with a deadline


async def staff_login(session: aiohttp.ClientSession, staff: str) -> None:
    status, page = await get(session, f"http://{staff}/login")
    assert status == 200, page
    token = CSRF.search(page)
    assert token
    status, location = await post(session, f"http://{staff}/login",
                                  {"_csrf": token.group(1), "username": "carla", "password": PASSWORD})
    assert (status, location) == (303, "/"), (status, location)


async def staff_accept(session: aiohttp.ClientSession, staff: str, visitor_text: str) -> str:
    """Accept the waiting chat whose first message is ``visitor_text``; returns its id."""
    # The workspace's board frame; paused, it lists the whole waiting line.
    status, board = await get(session, f"http://{staff}/board?paused=1")
    assert status == 200 and visitor_text in board, board
    row = next(r for r in board.split("<li") if visitor_text in r)
    cid = ACCEPT.search(row)
    token = CSRF.search(row)
    assert cid and token, board
    status, location = await post(session, f"http://{staff}/accept/{cid.group(1)}", {"_csrf": token.group(1)})
    assert (status, location) == (303, f"/chat/{cid.group(1)}"), (status, location)
    return cid.group(1)


async def staff_send(session: aiohttp.ClientSession, staff: str, cid: str, text: str) -> None:
    status, compose = await get(session, f"http://{staff}/chat/{cid}/compose")
    token = CSRF.search(compose)
    assert status == 200 and token, compose
    status, _ = await post(session, f"http://{staff}/chat/{cid}/send", {"_csrf": token.group(1), "text": text})
    assert status == 303


async def frame_text(frame: Any) -> str:
    """The frame's HTML, or '' while it is between two documents (it navigates itself)."""
    from playwright.async_api import Error as PlaywrightError

    try:
        return str(await frame.content())
    except PlaywrightError:
        return ""


def stamp_of(page: str) -> str:
    found = re.search(r'url=/chat/messages\?v=([^"#&]+)', page)
    assert found, page
    return found.group(1)


# -- the proof ---------------------------------------------------------------------------------


async def test_launch_mode_publishes_both_onions(world: World) -> None:
    app = world.app
    assert app.visitor != app.staff
    shown = app.cli("onion", "show", "--no-qr")
    assert f"visitor: http://{app.visitor}/" in shown and f"staff:   http://{app.staff}/" in shown
    assert "proof-of-work on" in app.log  # this tor supports it: no fallback was needed
    started = time.monotonic()
    async with socks_session(world.anon) as visitor:
        status, page = await retry("first fetch of the visitor onion", lambda: get(visitor, f"http://{app.visitor}/"),
                                   FRESH_ONION_TIMEOUT)
    world.timings.note("first fetch of the visitor onion through a Tor client", time.monotonic() - started)
    assert status == 200 and 'action="/start"' in page
    # The addresses are the stored keys' (what an existing installation has in <data>/onion/):
    # launch mode derives tor's key files from them, and tor's hostname files agree.
    for name, address in (("visitor", app.visitor), ("staff", app.staff)):
        stored = json.loads((app.data_dir / "onion" / f"{name}.key").read_text())["address"]
        assert stored == address == (app.data_dir / "tor" / "hs" / name / "hostname").read_text().strip()


async def test_chat_over_tor(world: World) -> None:
    app = world.app
    text = "hello, is anyone there? (over tor)"
    async with socks_session(world.anon) as visitor, socks_session(world.desk) as counsellor:
        # A counsellor is on duty first: without one, the service does not open new chats.
        started = time.monotonic()
        await retry("first fetch of the staff onion (client authorization)",
                    lambda: staff_login(counsellor, app.staff), FRESH_ONION_TIMEOUT)
        world.timings.note("staff login through an authorized client (first fetch included)",
                           time.monotonic() - started)
        status, landing = await retry("visitor landing", lambda: get(visitor, f"http://{app.visitor}/"), 30)
        token = CSRF.search(landing)
        assert status == 200 and token
        assert (await post(visitor, f"http://{app.visitor}/start", {"_csrf": token.group(1), "nickname": "sun"}))[0] \
            == 303
        status, compose = await get(visitor, f"http://{app.visitor}/chat/compose")
        token = CSRF.search(compose)
        assert status == 200 and token
        assert (await post(visitor, f"http://{app.visitor}/chat/send", {"_csrf": token.group(1), "text": text}))[0] \
            == 303

        cid = await staff_accept(counsellor, app.staff, text)

        # The visitor's messages frame shows the newest stamp; the next request is held until
        # the counsellor's reply arrives: that wait is the chat round trip over Tor.
        status, frame = await get(visitor, f"http://{app.visitor}/chat/messages")
        assert status == 200 and text in frame and "A counsellor has joined" in frame
        held = asyncio.ensure_future(get(visitor, f"http://{app.visitor}/chat/messages?v={stamp_of(frame)}"))
        reply = "I am here. You are safe to talk."
        started = time.monotonic()
        await staff_send(counsellor, app.staff, cid, reply)
        status, frame = await held
        world.timings.note("chat round trip over Tor (counsellor sends -> visitor's held frame shows it)",
                           time.monotonic() - started)
        assert status == 200 and reply in frame
        world.visitor_cookies = {c.key: c.value for c in visitor.cookie_jar}
        world.visitor_text = text


async def client_rend_circuits(node: Node, onion: str) -> set[str]:
    """The ids the client ``node`` gives its built rendezvous circuits to ``onion`` (its own numbering)."""
    status = await control(node, "GETINFO circuit-status")
    service = onion.removesuffix(".onion")
    return {line.split()[0].lstrip("250-+") for line in status.splitlines()
            if " BUILT " in line and "PURPOSE=HS_CLIENT_REND" in line and f"REND_QUERY={service}" in line}


async def test_two_tor_clients_have_two_circuits_and_a_flooding_one_is_closed(world: World) -> None:
    """Budgets are per circuit: one Tor client spends its own, another is untouched; going on closes the circuit."""
    app = world.app
    landing = f"http://{app.visitor}/"
    async with socks_session(world.anon, one_request_per_connection=True) as flooder, \
            socks_session(world.desk) as other:
        await retry("visitor landing", lambda: get(flooder, landing), FRESH_ONION_TIMEOUT)
        statuses = []
        for _ in range(SESSIONS_PER_CIRCUIT + 2):
            flooder.cookie_jar.clear()  # every first visit opens a new session on the same circuit
            statuses.append((await get(flooder, landing))[0])
        # Earlier tests' visits on this circuit count too (a circuit lives ten minutes): first
        # visits are welcome until the budget is spent, then the calm "wait" page.
        first_refused = statuses.index(429)
        assert first_refused > 0 and set(statuses[first_refused:]) == {429}, statuses
        status, page = await retry("the other client", lambda: get(other, landing), FRESH_ONION_TIMEOUT)
        assert status == 200 and 'action="/start"' in page, "another circuit has budgets of its own"
        before = await client_rend_circuits(world.anon, app.visitor)
        assert before, "the flooder's client has a rendezvous circuit to the visitor onion"
        # The server cuts it off (its connections end, new ones are refused): the flood stops.
        with contextlib.suppress(aiohttp.ClientError, OSError, ProxyError, ProxyConnectionError, ProxyTimeoutError):
            for _ in range(STRIKES * 2):  # going on after being told to wait: the circuit is closed
                flooder.cookie_jar.clear()
                assert (await get(flooder, landing))[0] == 429
        closed_at = time.monotonic()
        while await client_rend_circuits(world.anon, app.visitor) & before:
            assert time.monotonic() - closed_at < 10, "tor did not close the flooding circuit (CLOSECIRCUIT)"
            await asyncio.sleep(0.2)  # polling the client's circuits with a deadline
        world.timings.note("flooding circuit closed by CLOSECIRCUIT, seen by its client", time.monotonic() - closed_at)
        await wait_for_log(app, "closed 1 Tor circuit(s) that went on over their budgets", 1, 10)
    async with socks_session(world.anon) as fresh:
        status, _ = await retry("a new circuit of the same client", lambda: get(fresh, landing), FRESH_ONION_TIMEOUT)
    assert status == 200, "a new circuit starts with fresh budgets"
    assert "Traceback" not in app.log


async def test_chromium_without_javascript_chats_over_tor(world: World) -> None:
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(chromium).exists():
        pytest.skip("chromium is not installed (apt-get install chromium)")
    from playwright.async_api import async_playwright

    app = world.app
    text = "typed in chromium with javascript off"
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=chromium,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  f"--proxy-server=socks5://{LOOPBACK}:{world.anon.socks_port}",
                  # Every name is resolved by tor through the proxy; nothing reaches a DNS server.
                  f"--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE {LOOPBACK}"])
        try:
            context = await browser.new_context(java_script_enabled=False)
            page = await context.new_page()
            seen: list[str] = []
            page.on("request", lambda r: seen.append(f"{time.monotonic():.1f} {r.method} {r.url}"))
            page.on("response", lambda r: seen.append(f"{time.monotonic():.1f} {r.status} {r.url}"))
            async with socks_session(world.desk) as counsellor:
                await retry("staff login", lambda: staff_login(counsellor, app.staff), FRESH_ONION_TIMEOUT)
                started = time.monotonic()
                await page.goto(f"http://{app.visitor}/", timeout=60_000)
                world.timings.note("chromium (JS off) loads the visitor onion", time.monotonic() - started)
                await page.fill("#nickname", "moon")
                await page.click("form[action='/start'] button[type=submit]")
                # Not "load": the page's load waits for the messages frame, whose request is held.
                await page.wait_for_url(f"http://{app.visitor}/chat", wait_until="commit", timeout=30_000)
                frame_element = await page.wait_for_selector("iframe[name=compose]", timeout=30_000)
                assert frame_element is not None
                compose = await frame_element.content_frame()
                assert compose is not None
                await compose.wait_for_selector("#text", timeout=30_000)
                await compose.fill("#text", text)
                async with page.expect_response(lambda r: r.url.endswith("/chat/send")):
                    await compose.click("button[type=submit]")
                cid = await staff_accept(counsellor, app.staff, text)
                reply = "reply seen by a real browser"
                started = time.monotonic()
                await staff_send(counsellor, app.staff, cid, reply)
                messages = page.frame(name="messages")
                assert messages is not None
                deadline = time.monotonic() + 30
                while reply not in await frame_text(messages):
                    assert time.monotonic() < deadline, "\n".join([*seen, await frame_text(messages)])
                    await asyncio.sleep(0.05)  # polling the frame with a deadline
                world.timings.note("chat round trip in chromium over Tor", time.monotonic() - started)
                assert text in await frame_text(messages)
        finally:
            await browser.close()


async def test_unauthorized_client_is_refused_and_visitor_onion_has_no_staff_routes(world: World) -> None:
    app = world.app
    assert await settled_socks_reply(world.anon, app.staff) == SOCKS_CLIENT_AUTH_MISSING
    async with socks_session(world.anon) as visitor:
        for path in ("/login", "/accept/x", "/chat/x/messages", "/board"):
            status, _ = await retry(path, functools.partial(get, visitor, f"http://{app.visitor}{path}"), 30)
            assert status == 404, path


async def test_killed_tor_is_relaunched_and_the_conversation_survives(world: World) -> None:
    app = world.app
    assert world.visitor_cookies, "needs the conversation of test_chat_over_tor"
    pid = app.tor_pid()
    back_before = app.log.count("onion services back at")
    os.kill(pid, signal.SIGKILL)
    killed = time.monotonic()
    await wait_for_log(app, "tor connection lost; republishing", 1, 10)
    await wait_for_log(app, "onion services back at", back_before + 1, 30)
    world.timings.note("tor killed -> relaunched, bootstrapped, both onions republished", time.monotonic() - killed)
    await new_identity(world.anon)

    async def messages() -> tuple[int, str]:
        async with socks_session(world.anon, world.visitor_cookies) as visitor:
            return await get(visitor, f"http://{app.visitor}/chat/messages")

    status, frame = await retry("the visitor onion after tor was killed", messages, 30 - (time.monotonic() - killed))
    world.timings.note("visitor onion reachable again after its tor was killed", time.monotonic() - killed)
    assert time.monotonic() - killed < 30
    assert status == 200 and world.visitor_text in frame, frame
    assert app.tor_pid() != pid


async def test_restart_keeps_both_addresses(world: World) -> None:
    app = world.app
    before = (app.visitor, app.staff)
    tor_pid = app.tor_pid()
    app.stop()
    assert not Path(f"/proc/{tor_pid}").exists() or "zombie" in Path(f"/proc/{tor_pid}/status").read_text().lower()
    app.start()
    assert (app.visitor, app.staff) == before
    await new_identity(world.anon)
    async with socks_session(world.anon) as visitor:
        status, _ = await retry("the visitor onion after a restart", lambda: get(visitor, f"http://{app.visitor}/"),
                                FRESH_ONION_TIMEOUT)
    assert status == 200


async def test_staff_keys_change_without_a_restart(world: World) -> None:
    """Revoke the counsellor's key and issue a new one while onionchat runs: Tor enforces both."""
    app = world.app
    app.cli("staff-key", "remove", "carla-desk")
    await wait_for_log(app, "staff onion republished for 0 key(s)", 1, 30)
    out = app.cli("staff-key", "add", "carla-desk-2")
    match = AUTH_PRIVATE.search(out)
    assert match, out
    await wait_for_log(app, "staff onion republished for 1 key(s)", 1, 60)
    await new_identity(world.desk)  # forget the descriptor fetched with the old key
    assert await settled_socks_reply(world.desk, app.staff) == SOCKS_CLIENT_AUTH_BAD

    (world.desk_auth / "carla-desk.auth_private").unlink()
    (world.desk_auth / "carla-desk-2.auth_private").write_text(match.group(1) + "\n")
    world.net.reload_node(world.desk)
    await new_identity(world.desk)
    async with socks_session(world.desk) as counsellor:
        await retry("staff login with the new key", lambda: staff_login(counsellor, app.staff), FRESH_ONION_TIMEOUT)


async def test_control_mode_publishes_on_a_running_tor(world: World, tmp_path: Path) -> None:
    host = await asyncio.to_thread(world.net.add_host, "systemtor")
    app = Onionchat(home=tmp_path / "control", net=world.net, mode="control",
                    tor_settings={"control_socket": "", "control_port": host.control_port})
    app.cli("staff-key", "add", "someone")
    started = time.monotonic()
    await asyncio.to_thread(app.start)
    try:
        world.timings.note("control mode: start to both onions published", time.monotonic() - started)
        assert app.tor_settings and (app.visitor, app.staff) != (world.app.visitor, world.app.staff)
        assert not (app.data_dir / "tor").exists()  # no tor of its own
        async with socks_session(world.anon) as visitor:
            status, page = await retry("visitor onion in control mode", lambda: get(visitor, f"http://{app.visitor}/"),
                                       FRESH_ONION_TIMEOUT)
        assert status == 200 and 'action="/start"' in page
        assert await settled_socks_reply(world.anon, app.staff) == SOCKS_CLIENT_AUTH_MISSING
    finally:
        await asyncio.to_thread(app.stop)
    assert host.running(), "control mode must never stop a tor it did not start"


async def test_torrc_mode_with_torrc_example(world: World, tmp_path: Path) -> None:
    """torrc.example as written, on a tor of the network: onionchat reads the addresses and serves."""
    hs = tmp_path / "hs"
    hs.mkdir(mode=0o700)
    visitor_dir, staff_dir = hs / "onionchat-visitor", hs / "onionchat-staff"
    app = Onionchat(home=tmp_path / "torrc", net=world.net, mode="torrc",
                    tor_settings={"hidden_service_dirs": [str(visitor_dir), str(staff_dir)]})
    example = (Path(__file__).resolve().parent.parent / "torrc.example").read_text()
    server = app.server_settings
    example = (example.replace("/var/lib/tor/", f"{hs}/")
               .replace("127.0.0.1:8080", f"127.0.0.1:{server['visitor_port']}")
               .replace("127.0.0.1:8081", f"127.0.0.1:{server['staff_port']}"))
    lines = [line for line in example.splitlines() if line.strip() and not line.startswith("#")]
    host = await asyncio.to_thread(world.net.add_host, "torrchost", extra=lines)

    # The staff key: printed by onionchat for the admin, who puts it in authorized_clients.
    out = app.cli("staff-key", "add", "dana")
    server_line = re.search(r"^(descriptor:x25519:[A-Z2-7]{52})$", out, re.MULTILINE)
    client_line = AUTH_PRIVATE.search(out)
    assert server_line and client_line, out
    (staff_dir / "authorized_clients").mkdir(mode=0o700, exist_ok=True)
    (staff_dir / "authorized_clients" / "dana.auth").write_text(server_line.group(1) + "\n")
    world.net.reload_node(host)
    (world.desk_auth / "dana.auth_private").write_text(client_line.group(1) + "\n")
    world.net.reload_node(world.desk)

    await asyncio.to_thread(app.start)
    try:
        assert app.visitor == (visitor_dir / "hostname").read_text().strip()
        assert app.staff == (staff_dir / "hostname").read_text().strip()
        async with socks_session(world.anon) as visitor:
            status, page = await retry("visitor onion in torrc mode", lambda: get(visitor, f"http://{app.visitor}/"),
                                       FRESH_ONION_TIMEOUT)
        assert status == 200 and 'action="/start"' in page
        assert await settled_socks_reply(world.anon, app.staff) == SOCKS_CLIENT_AUTH_MISSING
        async with socks_session(world.desk) as counsellor:
            status, page = await retry("staff onion in torrc mode", lambda: get(counsellor, f"http://{app.staff}/login"),
                                       FRESH_ONION_TIMEOUT)
        assert status == 200 and 'name="password"' in page
    finally:
        await asyncio.to_thread(app.stop)
