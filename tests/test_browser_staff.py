"""A counsellor's shift in Debian's chromium with JavaScript off, 1366×768, measured as a person would notice.

Many tabs open and a Send still reaches the visitor within 2 s; 40 clicks timed around visitors'
arrivals, none lost and nothing moving; three chats at once with every draft kept; the alerts
tab's title and icon; a closed browser that stops counting as available. Each test prints its
figures.
"""

from __future__ import annotations

import asyncio
import json
import re
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
from playwright.sync_api import Browser, BrowserContext, FrameLocator, Page, Request, ViewportSize, expect
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from tests.chromium import PHONE, launched
from tests.liveserver import LiveServer, live_server
from tests.pages import STEP_MS, Counsellor, Screen, Visitor, shoot, until

pytestmark = pytest.mark.browser

LAPTOP: ViewportSize = {"width": 1366, "height": 768}
SEND_LIMIT_S = 2.0  # issue 12: whatever the tabs, a Send reaches the visitor within 2 s
SEND_SAMPLES = 3
CLICKS = 40
CLICK_ANSWER_MS = 2_000  # a pressed button sends its form within this, or the click was lost
CSRF_RE = re.compile(r'name="_csrf" value="([^"]+)"')
COMPOSE = 'iframe[title="Write a message"]'

Serve = Callable[..., AbstractContextManager[LiveServer]]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with launched(STEP_MS) as chromium:
        yield chromium


@pytest.fixture
def serve(tmp_path: Path) -> Serve:
    """Factory: a live onionchat with ``settings`` and staff accounts (carla, a counsellor, unless told)."""
    def make(settings: dict[str, dict[str, Any]] | None = None,
             staff: dict[str, str] | None = None) -> AbstractContextManager[LiveServer]:
        return live_server(tmp_path, settings or {}, staff or {"carla": "counsellor"})
    return make


class Windows:
    """Private browser windows with JavaScript off (each its own cookies and connections)."""

    def __init__(self, browser: Browser) -> None:
        self.browser = browser
        self.made: list[BrowserContext] = []

    def page(self, viewport: ViewportSize = LAPTOP) -> Page:
        context = self.browser.new_context(java_script_enabled=False, viewport=viewport)
        context.set_default_timeout(STEP_MS)
        self.made.append(context)
        return context.new_page()


@pytest.fixture
def windows(browser: Browser) -> Iterator[Windows]:
    made = Windows(browser)
    yield made
    for context in made.made:
        context.close()


def start_visitors(windows: Windows, server: LiveServer, names: list[str]) -> list[Visitor]:
    """Visitors on phones who pressed Start chat and wrote a first line."""
    started = []
    for name in names:
        visitor = Visitor(windows.page(PHONE), server)
        visitor.start(name)
        visitor.send(f"Hello, I am {name}.")
        started.append(visitor)
    return started


def accept_all(counsellor: Counsellor, names: list[str]) -> dict[str, int]:
    """Accept each visitor from the board; the pane each chat opened in."""
    panes = {}
    for name in names:
        counsellor.accept(name)
        panes[name] = counsellor.pane
    return panes


def chat_id(counsellor: Counsellor, pane: int) -> str:
    """The id of the chat in workspace pane ``pane``, from its messages frame's address."""
    source = counsellor.in_pane(pane).locator("iframe.messages-frame").get_attribute("src")
    assert source is not None
    return source.split("/")[2]


def send_to_visitor(compose: FrameLocator, visitor: Visitor, text: str) -> float:
    """Type ``text`` and press Send; the seconds until the visitor's messages frame shows it."""
    box = compose.get_by_label("Your reply to the visitor")
    box.fill(text)
    send = compose.get_by_role("button", name="Send")
    expect(send).to_be_enabled()
    began = time.perf_counter()
    send.click(force=True, no_wait_after=True)  # checked just above: a person spends no time on Playwright's checks
    until(lambda: text in visitor.shown(), f"the visitor seeing {text!r}", 60)
    taken = time.perf_counter() - began
    expect(box).to_have_value("", timeout=60_000)  # the compose frame is back for the next one
    return taken


def test_a_send_reaches_the_visitor_whatever_tabs_are_open(serve: Serve, windows: Windows) -> None:
    names = ["Mira", "Ana", "Lena"]
    with serve() as server:  # shipped defaults: 20 s holds, as a counsellor's browser meets them
        counsellor = Counsellor(windows.page(), server)
        counsellor.log_in("carla")
        mira, ana, lena = start_visitors(windows, server, names)
        panes = accept_all(counsellor, names)
        cids = {name: chat_id(counsellor, pane) for name, pane in panes.items()}
        context = counsellor.page.context
        figures: dict[str, list[float]] = {}

        # Each chat in a tab of its own as well: 4 tabs, 7 self-updating frames.
        tabs = []
        for name in names:
            tab = context.new_page()
            tab.goto(f"{server.staff_url}chat/{cids[name]}", wait_until="domcontentloaded")
            tabs.append(tab)
        figures["workspace + 3 chat tabs"] = [
            send_to_visitor(tabs[0].frame_locator(COMPOSE), mira, f"Four tabs, check {n}")
            for n in range(SEND_SAMPLES)]
        # Two more workspaces: 6 tabs, 15 self-updating frames.
        for _ in range(2):
            context.new_page().goto(server.staff_url, wait_until="domcontentloaded")
        figures["6 tabs, from a workspace pane"] = [
            send_to_visitor(counsellor.in_pane(panes["Ana"]).frame_locator(COMPOSE), ana, f"Six tabs, pane {n}")
            for n in range(SEND_SAMPLES)]
        figures["6 tabs, from a chat tab"] = [
            send_to_visitor(tabs[2].frame_locator(COMPOSE), lena, f"Six tabs, tab {n}") for n in range(SEND_SAMPLES)]
        # And the other way: the first workspace still shows what a visitor writes.
        began = time.perf_counter()
        lena.send("Still there?")
        counsellor.pane = panes["Lena"]
        counsellor.sees("Still there?")
        back = time.perf_counter() - began

    print()
    for label, samples in figures.items():
        print(f"staff tabs, Send -> visitor, {label}: median {statistics.median(samples):.2f} s, "
              f"max {max(samples):.2f} s ({', '.join(f'{s:.2f}' for s in samples)})")
    print(f"staff tabs, visitor -> the first workspace with 6 tabs open: {back:.2f} s")
    assert all(s <= SEND_LIMIT_S for samples in figures.values() for s in samples), figures


class Arrival:
    """A visitor (plain HTTP, loopback) who presses Start chat at a chosen moment, in a thread of its own."""

    def __init__(self, server: LiveServer, nickname: str, at: float) -> None:
        self.status = 0
        self._thread = threading.Thread(target=lambda: asyncio.run(self._arrive(server, nickname, at)))
        self._thread.start()

    async def _arrive(self, server: LiveServer, nickname: str, at: float) -> None:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
            async with session.get(server.visitor_url) as response:
                token = CSRF_RE.search(await response.text())
            assert token is not None
            while (left := at - time.perf_counter()) > 0:
                await asyncio.sleep(min(left, 0.002))
            async with session.post(server.visitor_url + "start", allow_redirects=False,
                                    data={"_csrf": token.group(1), "nickname": nickname}) as response:
                self.status = response.status

    def join(self) -> None:
        self._thread.join()
        assert self.status == 303, f"the visitor could not start a chat: {self.status}"


# The window position of each named element, through the one frame it is in ("" for the page).
BOXES_JS = """(places) => { const out = {};
  for (const [name, [frame, selector]] of Object.entries(places)) {
    let d = document, x = 0, y = 0;
    if (frame) { const f = document.querySelector(frame); const r = f.getBoundingClientRect();
                 x = r.left + f.clientLeft; y = r.top + f.clientTop; d = f.contentDocument; }
    const e = d && d.querySelector(selector);
    if (e) { const r = e.getBoundingClientRect(); out[name] = [x + r.left, y + r.top]; } }
  return out; }"""


def boxes(screen: Screen) -> dict[str, tuple[float, float]]:
    """Where what the counsellor points at is (x, y in the window), through the frames it is in."""
    places = {"Set me away": ('iframe[name="status"]', "button"), "Your chats": ('iframe[name="board"]', "#mine-title"),
              "first chat line": ('iframe[name="board"]', ".slots li"), "Waiting": ('iframe[name="board"]', "#q-title"),
              "pane 1": ("", 'iframe[name="pane-1"]'), "pane 3": ("", 'iframe[name="pane-3"]')}
    expression = "(" + BOXES_JS + ")(" + json.dumps(places) + ")"
    result = screen.cdp.send("Runtime.evaluate", {"expression": expression, "returnByValue": True})
    found = result.get("result", {}).get("value") or {}
    return {name: (float(x), float(y)) for name, (x, y) in found.items()}


def scroll_room(screen: Screen) -> float:
    """How far the workspace page itself could scroll (0: it fits the window, nothing to reset)."""
    result = screen.cdp.send("Runtime.evaluate", {
        "expression": "document.scrollingElement.scrollHeight - document.scrollingElement.clientHeight",
        "returnByValue": True})
    return float(result.get("result", {}).get("value") or 0)


def test_no_click_is_lost_and_nothing_moves_when_visitors_arrive(serve: Serve, windows: Windows) -> None:
    # Visitors keep arriving while the counsellor is away, and the waiting line has room for all.
    with serve({"hours": {"open_without_staff": True}}) as server:
        counsellor = Counsellor(windows.page(), server)
        counsellor.log_in("carla")
        start_visitors(windows, server, ["Mira"])
        counsellor.accept("Mira")  # "Your chats" holds a chat, as on a working shift
        page, screen = counsellor.page, counsellor.screen
        status = page.frame_locator('iframe[name="status"]')

        before = boxes(screen)
        assert set(before) == {"Set me away", "Your chats", "first chat line", "Waiting", "pane 1", "pane 3"}
        Arrival(server, "First", time.perf_counter()).join()
        counsellor.board_shows("Waiting (1)")
        after = boxes(screen)
        moved = {name: round(after[name][1] - before[name][1]) for name in before}
        print(f"\nfirst arrival, movement in px: {moved}")
        assert set(moved.values()) == {0}, moved

        lost: list[int] = []
        largest_move, waiting, away = 0.0, 1, False
        for i in range(CLICKS):
            label = "Set me available" if away else "Set me away"
            box = status.get_by_role("button", name=label).bounding_box()
            assert box is not None
            x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
            start = time.perf_counter() + 0.3
            arrival = Arrival(server, f"Visitor {i}", start)
            offset = -0.1 + i * 0.01  # from 100 ms before the arrival to 290 ms after it
            while time.perf_counter() < start + offset:
                pass  # a busy wait: the click's moment matters to the millisecond
            try:
                with page.expect_request(lambda r: r.method == "POST" and r.url.endswith("/availability"),
                                         timeout=CLICK_ANSWER_MS):
                    page.mouse.click(x, y)
                away = not away
                expect(status.get_by_role("button", name="Set me available" if away else "Set me away")).to_be_visible()
            except PlaywrightTimeout:
                lost.append(round(offset * 1000))
            arrival.join()
            waiting += 1
            counsellor.board_shows(f"Waiting ({waiting})")
            now = boxes(screen)
            largest_move = max(largest_move, *(abs(now[name][1] - before[name][1]) for name in before))
        room = scroll_room(screen)
        readiness = screen.cdp.send("Runtime.evaluate", {"expression": "document.readyState",
                                                         "returnByValue": True})["result"]["value"]

    print(f"clicks on Set me away / Set me available around {CLICKS} arrivals: {len(lost)} of {CLICKS} lost "
          f"(at offsets {lost} ms); largest movement {largest_move:.0f} px; the page can scroll {room:.0f} px; "
          f"workspace document {readiness}")
    assert lost == [], f"{len(lost)} of {CLICKS} clicks lost, at {lost} ms from an arrival"
    assert largest_move == 0 and room == 0 and readiness == "complete"


def document_loads(page: Page, path: str) -> Callable[[], int]:
    """A counter of the documents ``page`` and its frames ask for at ``path`` from now on."""
    seen: list[Request] = []

    def record(request: Request) -> None:
        if request.resource_type == "document" and urlsplit(request.url).path == path:
            seen.append(request)

    page.on("request", record)
    return lambda: len(seen)


def test_three_chats_at_once_keep_every_draft(serve: Serve, windows: Windows) -> None:
    names = ["Mira", "Ana", "Lena"]
    with serve() as server:
        counsellor = Counsellor(windows.page(), server)
        counsellor.log_in("carla")
        workspace_loads = document_loads(counsellor.page, "/")
        chats = dict(zip(names, start_visitors(windows, server, names), strict=True))
        panes = accept_all(counsellor, names)
        pane_loads = {name: document_loads(counsellor.page, f"/pane/{pane}") for name, pane in panes.items()}
        drafts = {name: f"Draft for {name}: take your time, I am" for name in names}
        for name, pane in panes.items():
            counsellor.in_pane(pane).frame_locator(COMPOSE).get_by_label("Your reply to the visitor").fill(drafts[name])

        # Moving between the chats from the board, while every visitor writes: nothing reloads.
        board = counsellor.page.frame_locator(counsellor.BOARD)
        for name in ["Ana", "Lena", "Mira"]:
            board.get_by_role("link", name=name).click(no_wait_after=True)
            expect(counsellor.page).to_have_url(f"{server.staff_url}#pane-{panes[name]}")
        for name, visitor in chats.items():
            visitor.send(f"{name} writes again")
        for name, pane in panes.items():
            counsellor.pane = pane
            counsellor.sees(f"{name} writes again")
        counsellor.board_shows("new message")
        shoot(counsellor.page, "staff-workspace-three-chats-1366x768")
        for name, pane in panes.items():
            box = counsellor.in_pane(pane).frame_locator(COMPOSE).get_by_label("Your reply to the visitor")
            expect(box).to_have_value(drafts[name])
        assert workspace_loads() == 0 and all(loads() == 0 for loads in pane_loads.values()), (
            "the workspace or a pane reloaded")

        # Ending a chat takes a second step; the other panes keep their drafts.
        counsellor.pane = panes["Ana"]
        counsellor.chat.get_by_text("End chat", exact=True).click()
        confirm = counsellor.chat.get_by_role("button", name="Yes, end the chat")
        expect(confirm).to_be_visible()
        assert "ended" not in chats["Ana"].shown()  # the first press only asked
        confirm.click()
        chats["Ana"].sees("The counsellor has ended the chat.")
        counsellor.chat.get_by_role("button", name="Skip the wrap-up").click()
        expect(counsellor.chat.get_by_role("heading", name=f"Pane {panes['Ana']} is free")).to_be_visible()
        for name in ("Mira", "Lena"):
            box = counsellor.in_pane(panes[name]).frame_locator(COMPOSE).get_by_label("Your reply to the visitor")
            expect(box).to_have_value(drafts[name])

        # Logging out with chats open asks who takes them; back to the line, the visitors are told.
        counsellor.page.get_by_role("button", name="Log out").click()
        expect(counsellor.page.get_by_role("heading", name="Your open chats")).to_be_visible()
        counsellor.page.get_by_role("button", name="Back to the waiting line, and log out").click()
        expect(counsellor.page.get_by_role("button", name="Log in")).to_be_visible()
        for name in ("Mira", "Lena"):
            chats[name].sees("Another counsellor will take over the chat.")
    print("\nthree chats: every draft kept while moving between them; the workspace and its panes never reloaded")


def favicon_href(page: Page) -> str:
    """The icon the alerts page names (read without waiting for its next reload)."""
    result = Screen(page).cdp.send("Runtime.evaluate", {
        "expression": "(document.querySelector('link[rel=icon]') || {}).href || ''", "returnByValue": True})
    return str(result.get("result", {}).get("value") or "")


def test_the_alerts_tab_follows_the_line_in_its_title_and_icon(serve: Serve, windows: Windows) -> None:
    interval = 2  # the alerts tab reloads every interval_seconds: short, so the test is
    with serve({"poll": {"interval_seconds": interval}}) as server:
        counsellor = Counsellor(windows.page(), server)
        counsellor.log_in("carla")
        alerts = counsellor.page.context.new_page()
        answers: list[float] = []
        alerts.on("response", lambda r: answers.append(r.request.timing["responseStart"])
                  if r.url.startswith(server.staff_url + "alerts") else None)
        alerts.goto(server.staff_url + "alerts")
        screen = Screen(alerts)
        assert screen.tab_title() == "onionchat"
        calm = favicon_href(alerts)
        assert calm.startswith("data:image/png;base64,")

        arrived = time.perf_counter()
        Arrival(server, "First", arrived).join()
        until(lambda: screen.tab_title() == "(1) onionchat", "the alerts tab titled (1)", interval + 5)
        took = time.perf_counter() - arrived
        one = favicon_href(alerts)
        assert one.startswith("data:image/png;base64,") and one != calm

        start_visitors(windows, server, ["Ana"])  # she writes a first line
        counsellor.accept("Ana")
        until(lambda: screen.tab_title() == "(1) New message – onionchat", "a reply due in the title", interval + 5)
        assert favicon_href(alerts) not in (calm, one)
        counsellor.send("Hello Ana, I am here.")
        until(lambda: screen.tab_title() == "(1) onionchat", "the reply given", interval + 5)
        assert favicon_href(alerts) == one
        # Answered at once each time, never a held request: the tab is not "loading" between updates.
        assert len(answers) >= 3 and max(answers) < 1000, answers

        for url in (server.staff_url, server.visitor_url):
            response = alerts.goto(url + "favicon.ico")
            assert response is not None and response.status == 200
            assert response.headers["content-type"] == "image/png"
    print(f"\nalerts tab: a visitor's arrival in its title after {took:.2f} s (reloads every {interval} s); "
          f"server answer {max(answers):.0f} ms at most")


def test_a_closed_browser_stops_counting_as_available(serve: Serve, windows: Windows) -> None:
    # With holds of 2 s (and reloads every 1 s) a page that stopped asking is gone after 2 × 2 + 5 s.
    hold = 2
    presence_s = 2 * hold + 5
    with serve({"poll": {"hold_seconds": hold, "interval_seconds": 1}},
               {"carla": "counsellor", "sam": "supervisor"}) as server:
        counsellor = Counsellor(windows.page(), server)
        counsellor.log_in("carla")
        supervisor = Counsellor(windows.page(), server)
        supervisor.log_in("sam")  # supervisors start away: not counted
        visitor = Visitor(windows.page(PHONE), server)
        visitor.start("Mira")
        visitor.sees("Estimated wait: about 8 minutes")  # one counsellor: 8 minutes a chat, not 4
        counsellor.page.context.close()  # closed without logging out
        closed = time.perf_counter()
        visitor.sees("No counsellor is available at this moment", presence_s + hold + 10)
        gone = time.perf_counter() - closed
        assert "Estimated wait" not in visitor.shown()  # no promise next to "nobody is there"
        assert "You are number 1 in line." in visitor.shown()
    print(f"\npresence: a closed browser stopped counting after {gone:.1f} s (window {presence_s} s, holds {hold} s)")
    assert gone <= presence_s + hold + 2
