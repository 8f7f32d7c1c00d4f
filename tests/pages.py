"""What a person does and sees in a real browser, for every browser test: one set of helpers.

chromium (Playwright, JavaScript off, launched by tests/chromium.py):
    ``until(condition, what)``     wait for something a person would notice; the seconds it took
    ``go(page, url)``              open a URL, done once the document is parsed (held frames never "load")
    ``shoot(page, name)``          a screenshot into test-artifacts/screenshots/NAME.png
    ``Screen(page)``               what is on screen, read through DevTools (works with JS off):
                                   ``text``, ``tab_title``, ``overflow``, ``rect``, ``scroll``,
                                   ``visible_items``
    ``Visitor(page, server)``      the visitor's tab: ``start``, ``send``, ``sees``, ``shown``, ``box``
    ``Counsellor(page, server)``   a counsellor's workspace tab: ``log_in``, ``board_shows``, ``accept``
                                   (into a pane), ``send``, ``sees``, ``end_chat``, ``wrap_up``
    ``assert_within_view(page, locator, what)``  on screen without scrolling
Firefox ESR (Marionette, launched by tests/firefox.py):
    ``in_frame``, ``frame_text``, ``wait_for``, ``shoot_firefox``, ``measure`` (the same figures as
    ``Screen``, through Marionette's privileged sandbox: the page's own JavaScript stays off)
Either engine:
    ``serving(tmp, settings, staff)``  a live server whose Quick exit leads to a neutral page on loopback
    ``StaffClient(server)``        a counsellor over plain HTTP (login, accept, send, end, read),
                                   when the test is about the visitor's browser

The figures (rectangles, scroll offsets, visible messages) are read by one JavaScript function,
``MEASURE``, run by the test harness (DevTools or Marionette), never by the page.
"""

from __future__ import annotations

import http.cookiejar
import json
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from playwright.sync_api import FrameLocator, Locator, Page, expect

from tests.chromium import DESKTOP, PHONE
from tests.liveserver import PASSWORD, LiveServer, NeutralPage, live_server, merged

if TYPE_CHECKING:
    from tests.firefox import Marionette

SCREENSHOTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "screenshots"
STEP_MS = 10_000  # the most any step may take by itself on a busy machine
LOGIN_S = 30.0  # argon2id with production costs, one login at a time
CSRF_RE = re.compile(r'name="_csrf" value="([^"]+)"')

# Run by the harness, never by the page: rectangles in the top page's viewport (CSS px).
# measure(frame, items, below) -> {scroll: [x, y], view: [w, h], frame: rect|null,
#   visible: how many ``items`` inside ``frame`` are wholly on screen: within the frame's box, within
#   the window, and above the top of the element ``below`` (the reply box's frame)}.
MEASURE = """(frameSel, itemSel, belowSel) => {
  const box = r => r && {x: r.left, y: r.top, width: r.width, height: r.height, bottom: r.bottom, right: r.right};
  const root = document.documentElement;
  const out = {scroll: [window.scrollX, window.scrollY], view: [root.clientWidth, root.clientHeight],
               frame: null, visible: 0};
  const frame = frameSel && document.querySelector(frameSel);
  if (!frame) return out;
  const f = frame.getBoundingClientRect();
  out.frame = box(f);
  const below = belowSel && document.querySelector(belowSel);
  const left = f.left + frame.clientLeft, top = f.top + frame.clientTop;
  const lo = Math.max(0, top);
  const hi = Math.min(root.clientHeight, top + frame.clientHeight, below ? below.getBoundingClientRect().top : 1e9);
  const doc = frame.contentDocument;
  if (!doc || !itemSel) return out;
  for (const item of doc.querySelectorAll(itemSel)) {
    const r = item.getBoundingClientRect();
    if (r.height > 0 && top + r.top >= lo - 0.5 && top + r.bottom <= hi + 0.5 && left + r.left >= -0.5) out.visible++;
  }
  return out;
}"""


@contextmanager
def serving(tmp: Path, settings: Mapping[str, Mapping[str, Any]] | None = None, staff: Mapping[str, str] | None = None,
            *, password: str = PASSWORD) -> Iterator[tuple[LiveServer, NeutralPage]]:
    """``live_server`` (settings, staff accounts) with Quick exit leading to a NeutralPage on loopback."""
    with NeutralPage() as neutral, live_server(
            tmp, merged({"visitor": {"quick_exit_url": neutral.url}}, settings), staff, password=password) as live:
        yield live, neutral


def until(condition: Callable[[], bool], what: str, timeout_s: float = STEP_MS / 1000,
          tick: Callable[[], None] = lambda: time.sleep(0.005)) -> float:
    """Check ``condition`` until it holds; the seconds that took, or AssertionError naming ``what``.

    ``tick`` runs between checks: a short pause, or a call that lets Playwright deliver events.
    """
    began = time.perf_counter()
    while not condition():
        if time.perf_counter() - began > timeout_s:
            raise AssertionError(f"{what}: not seen within {timeout_s} s")
        tick()
    return time.perf_counter() - began


def go(page: Page, url: str) -> None:
    """Open ``url``; done when the document is parsed ("load" waits for frames that are held requests)."""
    page.goto(url, wait_until="domcontentloaded")


def shoot(page: Page, name: str, *, full_page: bool = False, path: Path | None = None) -> Path:
    """A screenshot of what the page shows into test-artifacts/screenshots/NAME.png (or ``path``)."""
    target = path or SCREENSHOTS / f"{name}.png"
    target.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(target), full_page=full_page)
    return target


def shoot_sizes(page: Page, name: str) -> None:
    """A screenshot at phone and at desktop size (NAME-360x740.png, ...); neither may scroll sideways."""
    for size in (PHONE, DESKTOP):
        page.set_viewport_size(size)
        width, height = size["width"], size["height"]
        shoot(page, f"{name}-{width}x{height}")
        assert Screen(page).overflow() == [], f"{name} scrolls sideways at {width} px"


class Screen:
    """What a page shows, read through the DevTools protocol (which works with JavaScript off).

    A self-updating frame always has its next version in flight as a held request.
    Playwright's locators treat a frame in that state as "navigating" and wait for it (up to
    the hold time), so the text of such frames is read from the page that contains them,
    which is idle; that is also what a person sees: the current document stays on screen.
    """

    def __init__(self, page: Page) -> None:
        self.page = page
        self.cdp = page.context.new_cdp_session(page)
        self.target = self.cdp.send("Target.getTargetInfo")["targetInfo"]["targetId"]
        browser = page.context.browser
        assert browser is not None
        self.browser_cdp = browser.new_browser_cdp_session()

    def evaluate(self, expression: str) -> Any:
        """The value of ``expression`` in the page's document (the harness's script, not the page's)."""
        result = self.cdp.send("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        return result.get("result", {}).get("value")

    def tab_title(self) -> str:
        """The title on the browser's tab, as the browser itself shows it (even in the background)."""
        targets = self.browser_cdp.send("Target.getTargets")["targetInfos"]
        return next(str(t["title"]) for t in targets if t["targetId"] == self.target)

    def text(self, *iframes: str) -> str:
        """The rendered text of the page, or of the iframe reached through the CSS selectors ``iframes``.

        Several selectors name nested frames: a workspace pane, then the messages frame inside it.
        """
        expression = (f"(() => {{ let d = document; for (const s of {json.dumps(list(iframes))}) {{"
                      " const f = d && d.querySelector(s); d = f ? f.contentDocument : null; }"
                      " return d && d.body ? d.body.innerText : ''; })()")
        return str(self.evaluate(expression) or "")

    def overflow(self) -> list[str]:
        """Documents (the page and every same-origin frame) wider than their viewport."""
        expression = """(() => { const out = []; const walk = (d, where) => {
            const e = d.documentElement; const extra = e.scrollWidth - e.clientWidth;
            if (extra > 0) out.push(where + ' by ' + extra + ' px');
            for (const f of d.querySelectorAll('iframe')) if (f.contentDocument) walk(f.contentDocument, f.title);
          }; walk(document, 'page'); return out; })()"""
        return [str(x) for x in self.evaluate(expression) or []]

    def measure(self, frame: str = "", items: str = "", below: str = "") -> dict[str, Any]:
        """``MEASURE`` in this page: scroll offset, viewport, the frame's box, items wholly in view."""
        args = ", ".join(json.dumps(a) for a in (frame, items, below))
        return dict(self.evaluate(f"({MEASURE})({args})"))

    def rect(self, selector: str, iframe: str | None = None) -> dict[str, float] | None:
        """The box of the first element matching ``selector`` in the top page's viewport (CSS px).

        ``iframe``: the element is inside that frame; its box is moved by the frame's position.
        """
        expression = f"""(() => {{
          const f = {json.dumps(iframe)} === null ? null : document.querySelector({json.dumps(iframe)});
          const d = f === null ? document : f.contentDocument;
          const e = d && d.querySelector({json.dumps(selector)});
          if (!e) return null;
          const r = e.getBoundingClientRect(), o = f === null ? {{left: 0, top: 0}} : f.getBoundingClientRect();
          const dx = f === null ? 0 : o.left + f.clientLeft, dy = f === null ? 0 : o.top + f.clientTop;
          return {{x: r.left + dx, y: r.top + dy, width: r.width, height: r.height,
                   bottom: r.bottom + dy, right: r.right + dx}}; }})()"""
        value = self.evaluate(expression)
        return dict(value) if value else None

    def scroll(self) -> tuple[float, float]:
        """How far the page itself is scrolled (x, y)."""
        x, y = self.measure()["scroll"]
        return float(x), float(y)


def inside_view(box: dict[str, float] | None, width: float, height: float) -> bool:
    """True when ``box`` lies wholly within a ``width`` × ``height`` viewport."""
    return (box is not None and box["width"] > 0 and box["x"] >= -0.5 and box["y"] >= -0.5
            and box["x"] + box["width"] <= width + 0.5 and box["y"] + box["height"] <= height + 0.5)


def assert_within_view(page: Page, locator: Locator, what: str) -> None:
    """``locator`` is on screen without scrolling the page (frames and all)."""
    box = locator.bounding_box()
    size = page.viewport_size
    assert box is not None and size is not None, what
    assert box["x"] >= 0 and box["x"] + box["width"] <= size["width"], f"{what} sticks out sideways: {box}"
    assert box["y"] >= 0 and box["y"] + box["height"] <= size["height"], f"{what} is below the fold: {box}"


class ChatTab:
    """A browser tab holding a chat's frame set: messages that update themselves, and a compose form."""

    MESSAGES: str  # the messages frame's selector
    COMPOSE: str  # the compose frame's selector
    BOX: str  # the label of the compose box
    WHO: str  # for messages about what this tab shows

    def __init__(self, page: Page, server: LiveServer) -> None:
        self.page = page
        self.server = server
        self._screen: Screen | None = None

    @property
    def screen(self) -> Screen:
        """The tab's Screen (DevTools sessions are opened on first use)."""
        if self._screen is None:
            self._screen = Screen(self.page)
        return self._screen

    @property
    def chat(self) -> Page | FrameLocator:
        """The document holding the chat's frames."""
        return self.page

    def frames(self, frame: str) -> tuple[str, ...]:
        """The CSS selectors of the iframes that lead from the page to the chat's ``frame``."""
        return (frame,)

    @property
    def messages(self) -> FrameLocator:
        """For frames that have stopped updating (an ended chat): ordinary locators work there."""
        return self.chat.frame_locator(self.MESSAGES)

    @property
    def compose(self) -> FrameLocator:
        return self.chat.frame_locator(self.COMPOSE)

    @property
    def box(self) -> Locator:
        return self.compose.get_by_label(self.BOX)

    @property
    def send_button(self) -> Locator:
        return self.compose.get_by_role("button", name="Send")

    def send(self, text: str) -> None:
        """Type and press Send; done when the compose frame is back, empty (post/redirect/get)."""
        self.box.fill(text)
        self.send_button.click()
        expect(self.box).to_have_value("")

    def shown(self) -> str:
        """The text of the messages frame as it is on screen now."""
        return self.screen.text(*self.frames(self.MESSAGES))

    def sees(self, text: str, timeout_s: float = STEP_MS / 1000) -> float:
        """Wait until ``text`` is in the messages frame; the seconds that took."""
        return until(lambda: text in self.shown(), f"{self.WHO} seeing {text!r}", timeout_s)


class Visitor(ChatTab):
    """A visitor's tab: the landing page, then the chat frame set."""

    MESSAGES = 'iframe[name="messages"]'
    COMPOSE = 'iframe[name="compose"]'
    BOX = "Your message"
    WHO = "the visitor"

    def start(self, nickname: str = "", lang: str = "") -> None:
        """Open the landing page (in ``lang`` if given) and press Start chat; the chat page is open."""
        go(self.page, self.server.visitor_url + (f"lang/{lang}" if lang else ""))
        if nickname:
            self.page.locator("#nickname").fill(nickname)
        self.page.locator("form[action='/start'] button").click()
        expect(self.page).to_have_url(self.server.visitor_url + "chat")

    def layout(self) -> dict[str, Any]:
        """The chat page's figures: page scroll, the messages frame, messages wholly visible above the reply box."""
        return self.screen.measure(self.MESSAGES, "li.msg:not(.from-system)", self.COMPOSE)


class Counsellor(ChatTab):
    """A counsellor's workspace tab: the board, and a pane for each chat (or a chat page of its own).

    The workspace page never reloads by itself, so ordinary locators work on it and on its panes;
    the board and the messages frames are self-updating (always a held request in flight) and are
    read through DevTools (Screen), as the visitor's messages frame is.
    """

    BOARD = 'iframe[name="board"]'
    STATUS = 'iframe[name="status"]'
    MESSAGES = 'iframe[title="Messages"]'
    COMPOSE = 'iframe[title="Write a message"]'
    BOX = "Your reply to the visitor"
    WHO = "the counsellor"

    def __init__(self, page: Page, server: LiveServer) -> None:
        super().__init__(page, server)
        self.pane = 0  # the workspace pane of the chat this tab works in; 0: a chat page of its own

    def in_pane(self, pane: int) -> FrameLocator:
        """The document of workspace pane ``pane``."""
        return self.page.frame_locator(f'iframe[name="pane-{pane}"]')

    @property
    def chat(self) -> Page | FrameLocator:
        """Where the chat's frames are: its pane, or the page itself."""
        return self.in_pane(self.pane) if self.pane else self.page

    def frames(self, frame: str) -> tuple[str, ...]:
        return (f'iframe[name="pane-{self.pane}"]', frame) if self.pane else (frame,)

    def log_in(self, name: str) -> None:
        """Username, Password, Log in: lands on the workspace, its board filled in."""
        go(self.page, self.server.staff_url + "login")
        self.page.get_by_label("Username").fill(name)
        self.page.get_by_label("Password").fill(self.server.accounts[name])
        # The board refreshes itself into a held request at once: do not wait for that to "load".
        self.page.get_by_role("button", name=re.compile("Log in|Inloggen")).click(no_wait_after=True)
        until(lambda: "(" in self.board(), "the workspace's board", LOGIN_S)

    def log_in_still(self, name: str) -> None:
        """Log in with the page's own language (axe's tests): the workspace, its board's first refresh in flight."""
        go(self.page, self.server.staff_url + "login")
        self.page.get_by_label("Username").fill(name)
        self.page.get_by_label("Password").fill(self.server.accounts[name])
        with self.page.expect_request(lambda r: r.url.startswith(self.server.staff_url + "board?v="),
                                      timeout=LOGIN_S * 1000):
            self.page.get_by_role("button", name=re.compile("Log in|Inloggen")).click(no_wait_after=True)
        expect(self.page.locator("h1")).to_have_text(re.compile("Workspace|Werkplek"))

    def board(self) -> str:
        """The text of the workspace's board as it is on screen now."""
        return self.screen.text(self.BOARD)

    def board_shows(self, text: str, timeout_s: float = STEP_MS / 1000) -> float:
        """Wait until the board has ``text``; the seconds that took."""
        return until(lambda: text in self.board(), f"the board showing {text!r}", timeout_s)

    def pane_of(self, nickname: str) -> int:
        """The workspace pane showing the chat with ``nickname`` (waiting for it to open)."""
        heading = f"Chat with {nickname}"
        panes = range(1, 10)
        until(lambda: any(heading in self.screen.text(f'iframe[name="pane-{n}"]') for n in panes),
              f"a pane showing {heading!r}")
        return next(n for n in panes if heading in self.screen.text(f'iframe[name="pane-{n}"]'))

    def accept(self, nickname: str) -> None:
        """Accept the waiting visitor from the board; the chat opens in a free pane, which this tab then uses."""
        self.board_shows(nickname)
        self.page.frame_locator(self.BOARD).get_by_role("button", name=f"Accept {nickname}").click(no_wait_after=True)
        self.pane = self.pane_of(nickname)

    def accept_still(self, nickname: str) -> str:
        """Accept ``nickname`` from the board with updates paused (it lists everyone waiting); the chat id."""
        go(self.page, self.server.staff_url)
        board = self.page.locator(self.BOARD).element_handle().content_frame()
        assert board is not None
        board.goto(self.server.staff_url + "board?paused=1", wait_until="domcontentloaded")
        self.page.frame_locator(self.BOARD).get_by_role("button", name=f"Accept {nickname}").click(
            no_wait_after=True)
        source = self.in_pane(self.pane_of(nickname)).locator("iframe.messages-frame").get_attribute("src")
        assert source is not None
        return source.split("/")[2]

    def send_in(self, cid: str, text: str) -> None:
        """Open chat ``cid`` in a page of its own, send ``text`` and see it in the chat."""
        go(self.page, f"{self.server.staff_url}chat/{cid}")
        self.page.frame_locator(self.COMPOSE).get_by_label(self.BOX).fill(text)
        self.page.frame_locator(self.COMPOSE).get_by_role("button", name="Send").click()
        expect(self.page.frame_locator(self.MESSAGES).get_by_text(text)).to_be_visible()

    def end_chat(self) -> None:
        """End chat, then the second step that confirms it (English or Dutch)."""
        self.chat.get_by_text(re.compile("^(End chat|Chat beëindigen)$")).click()
        self.chat.get_by_role("button", name=re.compile("Yes, end the chat|Ja, chat beëindigen")).click()

    def wrap_up(self) -> None:
        """The wrap-up after a chat, in its pane: a test contact, saved; the pane is free again."""
        expect(self.chat.get_by_role("heading", name="Wrap-up")).to_be_visible()
        self.chat.get_by_label("test", exact=True).check()
        self.chat.get_by_role("button", name="Save wrap-up").click()
        expect(self.chat.get_by_role("heading", name=f"Pane {self.pane} is free")).to_be_visible()


class StaffClient:
    """A counsellor over plain HTTP with cookies (loopback only), for tests about the visitor's browser.

    Fast and quiet on a busy machine: no second browser tab holding requests. The board it reads
    is the still copy (``/board?paused=1``), which answers at once.
    """

    def __init__(self, server: LiveServer) -> None:
        self.base = server.staff_url
        self.server = server
        self.jar = http.cookiejar.CookieJar()

        class NoRedirect(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *args: Any, **kwargs: Any) -> None:
                return None

        self.opener = urllib.request.build_opener(urllib.request.ProxyHandler({}),
                                                  urllib.request.HTTPCookieProcessor(self.jar), NoRedirect())
        self.csrf = ""

    def request(self, path: str, form: dict[str, str] | None = None) -> tuple[int, str, str]:
        """GET ``path`` (or POST ``form`` with the CSRF token); status, Location, body."""
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
        """Log in as ``name`` (the live server's password for it)."""
        self.request("/login")
        status, _, _ = self.request("/login", {"username": name, "password": self.server.accounts[name]})
        assert status == 303, f"login of {name} failed ({status})"
        self.request("/board?paused=1")

    def accept(self, nickname: str, timeout_s: float = STEP_MS / 1000) -> str:
        """Accept the waiting visitor ``nickname`` (waiting for them to appear); the chat id."""
        pattern = re.compile(r'action="/accept/([^"]+)"[^>]*>(?:\s*<input[^>]*>)*\s*<button[^>]*aria-label="Accept '
                             + re.escape(nickname) + '"')
        found: list[str] = []

        def waiting() -> bool:
            # The board with updates paused lists everyone waiting, and answers at once.
            match = pattern.search(self.request("/board?paused=1")[2])
            if match:
                found.append(match.group(1))
            return bool(match)

        until(waiting, f"{nickname} waiting on the board", timeout_s, lambda: time.sleep(0.05))
        status, location, _ = self.request(f"/accept/{found[0]}", {})
        assert status == 303 and location.startswith("/chat/"), (status, location)
        self.request(location + "/compose")
        return location.rsplit("/", 1)[1]

    def send(self, cid: str, text: str) -> None:
        """Send ``text`` to the visitor of chat ``cid``."""
        status, _, _ = self.request(f"/chat/{cid}/send", {"text": text, "action": "send"})
        assert status == 303, status
        self.request(f"/chat/{cid}/compose")

    def end(self, cid: str) -> None:
        """End chat ``cid`` (as End chat does)."""
        self.request(f"/chat/{cid}")
        status, _, _ = self.request(f"/chat/{cid}/end", {})
        assert status == 303, status

    def messages(self, cid: str) -> str:
        """The text of chat ``cid``'s messages frame as the counsellor sees it (markup stripped)."""
        body = self.request(f"/chat/{cid}/messages?paused=1")[2]
        return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", body))


# -- Firefox ESR over Marionette ----------------------------------------------------------


def in_frame(client: Marionette, selector: str, read: Callable[[Marionette], Any]) -> Any:
    """Run ``read`` inside the frame ``selector`` of the top page, then come back to the top."""
    from tests.firefox import By

    client.switch_to_frame(client.find_element(By.CSS_SELECTOR, selector))
    try:
        return read(client)
    finally:
        client.switch_to_frame()


def frame_text(client: Marionette, selector: str) -> str:
    """The rendered text of the frame ``selector``."""
    from tests.firefox import By

    return str(in_frame(client, selector, lambda c: c.find_element(By.TAG_NAME, "body").text))


def wait_for(client: Marionette, condition: Callable[[Marionette], Any], what: str,
             timeout: float = STEP_MS / 1000) -> Any:
    """Wait until ``condition(client)`` is truthy; its value.

    A self-updating frame replaces its document while it is being read: the element just found
    can be gone (stale) or not there yet; the next look sees the new document.
    """
    from tests.firefox import Wait
    from tests.firefox import marionette_errors as errors

    swapped = (errors.StaleElementException, errors.NoSuchElementException, errors.NoSuchFrameException)
    return Wait(client, timeout=timeout, interval=0.02, ignored_exceptions=swapped).until(condition, message=what)


def measure(client: Marionette, frame: str = "", items: str = "", below: str = "") -> dict[str, Any]:
    """``MEASURE`` in Firefox's top page, run in Marionette's sandbox (page scripts stay off)."""
    value = client.execute_script(f"return ({MEASURE})(arguments[0], arguments[1], arguments[2]);",
                                  script_args=[frame, items, below], sandbox="system")
    return dict(value)


def firefox_rect(client: Marionette, selector: str) -> dict[str, float]:
    """The box of ``selector`` in the top page's viewport, as Firefox lays it out."""
    value = client.execute_script(
        "const e = document.querySelector(arguments[0]); if (!e) return null; const r = e.getBoundingClientRect();"
        " return {x: r.left, y: r.top, width: r.width, height: r.height};",
        script_args=[selector], sandbox="system")
    assert value is not None, f"{selector} is not on the page"
    return dict(value)


def shoot_firefox(client: Marionette, name: str) -> Path:
    """A full-page screenshot into test-artifacts/screenshots/firefox-NAME.png."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    target = SCREENSHOTS / f"firefox-{name}.png"
    target.write_bytes(client.screenshot(format="binary", full=True))
    return target
