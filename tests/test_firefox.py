"""Firefox ESR (Tor Browser's engine) with JavaScript off, driven by Marionette: a whole visitor conversation."""

from __future__ import annotations

import http.cookiejar
import os
import re
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.liveserver import LOOPBACK, PASSWORD, LiveServer, NeutralPage, free_port, live_server, wait_until

with warnings.catch_warnings():
    # marionette_driver's own imports warn (mozinfo calls distro.linux_distribution(), mozdevice
    # imports telnetlib); nothing of ours is hidden by this.
    warnings.filterwarnings("ignore", "distro.linux_distribution", DeprecationWarning)
    warnings.filterwarnings("ignore", "'telnetlib' is deprecated", DeprecationWarning)
    from marionette_driver import errors as marionette_errors
    from marionette_driver.by import By
    from marionette_driver.marionette import Marionette, WebElement
    from marionette_driver.wait import Wait

pytestmark = pytest.mark.browser

FIREFOX = os.environ.get("ONIONCHAT_FIREFOX", "firefox-esr")
SCREENSHOTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "screenshots"
STEP_S = 10.0
DELIVERY_LIMIT_S = 1.0  # as in chromium: a reply appears within a second, without any reload
CSRF_RE = re.compile(r'name="_csrf" value="([^"]+)"')

# JavaScript off as at Tor Browser's Safest, and no traffic beyond loopback: every other
# address goes to a proxy port where nothing listens, and Firefox's background services are off.
PREFS = {
    "javascript.enabled": False,
    "network.proxy.type": 1,
    "network.proxy.http": LOOPBACK, "network.proxy.http_port": 9,
    "network.proxy.ssl": LOOPBACK, "network.proxy.ssl_port": 9,
    "network.proxy.no_proxies_on": LOOPBACK,
    "network.proxy.allow_hijacking_localhost": False,
    "network.proxy.socks_remote_dns": True,
    "network.dns.disablePrefetch": True,
    "network.prefetch-next": False,
    "network.captive-portal-service.enabled": False,
    "network.connectivity-service.enabled": False,
    "app.update.auto": False, "app.update.enabled": False,
    "app.normandy.enabled": False,
    "browser.safebrowsing.malware.enabled": False, "browser.safebrowsing.phishing.enabled": False,
    "browser.safebrowsing.downloads.enabled": False,
    "browser.shell.checkDefaultBrowser": False,
    "browser.startup.homepage_override.mstone": "ignore",
    "browser.startup.page": 0,
    "datareporting.policy.dataSubmissionEnabled": False,
    "datareporting.healthreport.uploadEnabled": False,
    "toolkit.telemetry.enabled": False,
    "extensions.getAddons.cache.enabled": False,
    "extensions.update.enabled": False,
    "services.settings.server": f"http://{LOOPBACK}:9/",
    "dom.push.enabled": False,
    "privacy.trackingprotection.enabled": False,
}


def pref_line(name: str, value: object) -> str:
    text = ("true" if value else "false") if isinstance(value, bool) else (
        str(value) if isinstance(value, int) else '"' + str(value) + '"')
    return f'user_pref("{name}", {text});'


@pytest.fixture(scope="module")
def firefox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Marionette]:
    """Debian's firefox-esr, headless, JavaScript off, with a Marionette session (no geckodriver)."""
    binary = shutil.which(FIREFOX)
    if binary is None:
        pytest.skip(f"{FIREFOX} is missing: apt-get install -y firefox-esr")
    profile = tmp_path_factory.mktemp("firefox-profile")
    port = free_port()
    (profile / "user.js").write_text("\n".join([pref_line("marionette.port", port)]
                                               + [pref_line(k, v) for k, v in PREFS.items()]) + "\n")
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env["MOZ_HEADLESS"] = "1"
    log = (profile / "firefox.log").open("wb")
    process = subprocess.Popen([binary, "--headless", "--marionette", "--no-remote", "--profile", str(profile)],
                               stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        client = Marionette(host=LOOPBACK, port=port, startup_timeout=60)

        def listening() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"firefox-esr exited with {process.returncode}")
            with socket.socket() as probe:
                probe.settimeout(1.0)
                return probe.connect_ex((LOOPBACK, port)) == 0

        wait_until(listening, 60.0, "firefox-esr's Marionette port")
        # "eager": a page counts as loaded once parsed; its frames' next versions are held requests.
        client.start_session(capabilities={"pageLoadStrategy": "eager"})
        client.set_window_rect(width=1280, height=900)
        yield client
        client.delete_session()
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


class Counsellor:
    """The counsellor's side over plain HTTP with cookies (loopback only)."""

    def __init__(self, server: LiveServer) -> None:
        self.base = server.staff_url
        self.jar = http.cookiejar.CookieJar()

        class NoRedirect(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *args: Any, **kwargs: Any) -> None:
                return None

        self.opener = urllib.request.build_opener(urllib.request.ProxyHandler({}),
                                                  urllib.request.HTTPCookieProcessor(self.jar), NoRedirect())
        self.csrf = ""

    def request(self, path: str, form: dict[str, str] | None = None) -> tuple[int, str, str]:
        """GET (or POST ``form`` with the CSRF token); status, Location, body."""
        data = None
        if form is not None:
            data = urllib.parse.urlencode({"_csrf": self.csrf, **form}).encode()
        try:
            with self.opener.open(self.base + path.lstrip("/"), data=data, timeout=60) as response:
                status, location, body = response.status, response.headers.get("Location", ""), response.read()
        except urllib.error.HTTPError as exc:
            with exc:
                status, location, body = exc.code, exc.headers.get("Location", ""), exc.read()
        text = body.decode("utf-8", "replace")
        match = CSRF_RE.search(text)
        if match:
            self.csrf = match.group(1)
        return status, location, text

    def login(self, name: str) -> None:
        self.request("/login")
        status, _, _ = self.request("/login", {"username": name, "password": PASSWORD})
        assert status == 303, "login failed"
        self.request("/?paused=1")

    def accept(self, nickname: str) -> str:
        _, _, board = self.request("/?paused=1")
        match = re.search(r'action="/accept/([^"]+)"[^<]*<input[^>]*>\s*<button[^>]*aria-label="Accept '
                          + re.escape(nickname) + '"', board)
        assert match, f"{nickname} is not waiting"
        status, location, _ = self.request(f"/accept/{match.group(1)}", {})
        assert status == 303 and location.startswith("/chat/")
        self.request(location + "/compose")
        return location.rsplit("/", 1)[1]

    def send(self, cid: str, text: str) -> None:
        status, _, _ = self.request(f"/chat/{cid}/send", {"text": text, "action": "send"})
        assert status == 303


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, NeutralPage]]:
    with NeutralPage() as neutral, live_server(tmp_path_factory.mktemp("firefox"),
                                               {"visitor": {"quick_exit_url": neutral.url}},
                                               {"carla": "counsellor"}) as live:
        yield live, neutral


def shoot(client: Marionette, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    (SCREENSHOTS / f"firefox-{name}.png").write_bytes(client.screenshot(format="binary", full=True))


def in_frame(client: Marionette, selector: str, read: Callable[[Marionette], Any]) -> Any:
    """Run ``read`` inside the frame ``selector`` of the top page, then come back to the top."""
    client.switch_to_frame(client.find_element(By.CSS_SELECTOR, selector))
    try:
        return read(client)
    finally:
        client.switch_to_frame()


def frame_text(client: Marionette, selector: str) -> str:
    return str(in_frame(client, selector, lambda c: c.find_element(By.TAG_NAME, "body").text))


def wait(client: Marionette, condition: Callable[[Marionette], Any], what: str, timeout: float = STEP_S) -> Any:
    # A self-updating frame replaces its document while it is being read: the element just
    # found can be gone (stale) or not there yet; the next look sees the new document.
    swapped = (marionette_errors.StaleElementException, marionette_errors.NoSuchElementException,
               marionette_errors.NoSuchFrameException)
    return Wait(client, timeout=timeout, interval=0.02, ignored_exceptions=swapped).until(condition, message=what)


def test_a_whole_conversation_in_firefox_esr_with_javascript_off(firefox: Marionette,
                                                                   server: tuple[LiveServer, NeutralPage]) -> None:
    live, neutral = server
    client = firefox
    counsellor = Counsellor(live)
    counsellor.login("carla")

    client.navigate(live.visitor_url)
    assert client.find_element(By.CSS_SELECTOR, "h1").text == "Talk to a counsellor, anonymously"
    # JavaScript is off: the <noscript> stylesheet hides the banner asking for Safest.
    assert not client.find_element(By.CSS_SELECTOR, ".js-warning").is_displayed()
    shoot(client, "landing")

    client.find_element(By.ID, "nickname").send_keys("fox")
    client.find_element(By.CSS_SELECTOR, "form[action='/start'] button").click()
    wait(client, lambda c: c.get_url().endswith("/chat"), "the chat page")
    wait(client, lambda c: "in line" in frame_text(c, ".messages-frame"), "the place in line")
    shoot(client, "waiting")

    def compose(read: Callable[[Marionette], Any]) -> Any:
        return in_frame(client, ".compose-frame", read)

    def box(c: Marionette) -> WebElement:
        return c.find_element(By.ID, "text")

    compose(lambda c: box(c).send_keys("Hello from Firefox"))
    compose(lambda c: c.find_element(By.CSS_SELECTOR, "button[type=submit]").click())
    wait(client, lambda c: "Hello from Firefox" in frame_text(c, ".messages-frame"), "the visitor's own message")

    cid = counsellor.accept("fox")
    wait(client, lambda c: "A counsellor has joined the chat." in frame_text(c, ".messages-frame"), "the join")
    wait(client, lambda c: compose(lambda d: d.find_elements(By.ID, "text")), "the compose box")
    compose(lambda c: box(c).send_keys("typed but not sent"))

    began = time.perf_counter()
    counsellor.send(cid, "Hello fox, I am Carla.")
    wait(client, lambda c: "Hello fox, I am Carla." in frame_text(c, ".messages-frame"), "the reply, without reload")
    delivery = time.perf_counter() - began
    print(f"firefox-esr: reply shown {delivery * 1000:.0f} ms after the counsellor sent it")
    assert delivery < DELIVERY_LIMIT_S
    assert compose(lambda c: box(c).get_property("value")) == "typed but not sent"
    assert client.get_url().endswith("/chat")  # the page itself never reloaded
    shoot(client, "chat")

    client.find_element(By.CSS_SELECTOR, "a.quick-exit").click()
    wait(client, lambda c: c.get_url() == neutral.url, "the neutral page")
    assert client.title == NeutralPage.TITLE
    # The chat ended on the server too, and the counsellor is told how.
    wait_until(lambda: "Quick exit" in counsellor.request(f"/chat/{cid}/messages?paused=1")[2], STEP_S,
               "the counsellor seeing the quick exit")
