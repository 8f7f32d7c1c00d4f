"""Accessibility in Debian's chromium: axe-core (WCAG 2.2 A/AA) on every page, keyboard, zoom, phones, screenshots.

axe-core needs script, and our pages have none (the CSP allows none): the test injects the
vendored axe (tests/data/axe-core, MPL-2.0) into a context with JavaScript on and the CSP
bypassed, for the test's own script only. Everything a visitor does is also done with
JavaScript off, as at Tor Browser's Safest.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Frame, Page, ViewportSize, expect

from tests.chromium import DESKTOP, PHONE, launched
from tests.liveserver import LiveServer
from tests.pages import Counsellor, Screen, Visitor, go, serving, shoot

pytestmark = pytest.mark.browser

AXE = Path(__file__).resolve().parent / "data" / "axe-core" / "axe.min.js"
# WCAG 2.0, 2.1 and 2.2, levels A and AA: every rule axe tags with these.
WCAG_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]
STEP_MS = 5000
PASSWORD = "correct horse battery staple 42"
VISITOR_LANGS = ("en", "nl", "ar")
STAFF_LANGS = ("en", "nl")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One chromium for the module."""
    with pytest.MonkeyPatch.context() as env:
        # Self-updating pages always have their next (held) navigation in flight; act on what is shown.
        env.setenv("PLAYWRIGHT_SKIP_NAVIGATION_CHECK", "1")
        with launched(STEP_MS) as chromium:
            yield chromium


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One onionchat for the module: a counsellor, a supervisor and an admin."""
    with serving(tmp_path_factory.mktemp("a11y"), {"hours": {"open_without_staff": True}},
                 {"carla": "counsellor", "sam": "supervisor", "ada": "admin"}, password=PASSWORD) as (live, _):
        yield live


@dataclass
class Browsers:
    """Context factory for one test; closes what it opened."""

    browser: Browser
    contexts: list[BrowserContext]

    def page(self, *, script: bool, viewport: ViewportSize | None = None) -> Page:
        """A page in a fresh private context; ``script``: JavaScript on and CSP bypassed (axe only)."""
        context = self.browser.new_context(java_script_enabled=script, bypass_csp=script,
                                           viewport=viewport or DESKTOP)
        context.set_default_timeout(STEP_MS)
        self.contexts.append(context)
        return context.new_page()


@pytest.fixture
def browsers(browser: Browser) -> Iterator[Browsers]:
    made = Browsers(browser, [])
    yield made
    for context in made.contexts:
        context.close()


def loaded_frames(page: Page) -> list[Frame]:
    """The page and its frames, nested ones too (a workspace pane's chat), each with its own document parsed."""
    frames: list[Frame] = []
    pending = [page.main_frame]
    while pending:
        frame = pending.pop(0)
        frames.append(frame)
        for element in frame.locator("iframe").element_handles():
            child = element.content_frame()
            assert child is not None
            # Not the about:blank a frame starts as: an empty frame would pass every rule.
            child.wait_for_url(re.compile(r"^http"), wait_until="domcontentloaded")
            pending.append(child)
    return frames


def axe(page: Page) -> list[str]:
    """axe-core's WCAG 2.2 A/AA violations on the page and all its frames, one line per node."""
    source = AXE.read_text(encoding="utf-8")
    for frame in loaded_frames(page):
        # "load" never comes for a frame whose self-refresh is a held request: the DOM is what counts.
        frame.wait_for_load_state("domcontentloaded")
        if not frame.evaluate("typeof window.axe !== 'undefined'"):
            frame.add_script_tag(content=source)
    result: list[dict[str, Any]] = page.evaluate(
        """async (tags) => {
            const r = await axe.run(document, {runOnly: {type: 'tag', values: tags}, iframes: true,
                                               resultTypes: ['violations']});
            return r.violations.map(v => ({id: v.id, help: v.help,
                nodes: v.nodes.map(n => n.target.join(' > ') + ' :: '
                                        + (n.failureSummary || '').replace(/\\s+/g, ' '))}));
        }""", WCAG_TAGS)
    return [f"{page.url}: {v['id']} ({v['help']}): {node}" for v in result for node in v["nodes"]]


def test_the_axe_harness_sees_violations_inside_frames(server: LiveServer, browsers: Browsers) -> None:
    """Zero violations means something only if a violation would be found, frames included."""
    page = browsers.page(script=True)
    go(page, server.visitor_url + "lang/en")
    Visitor(page, server).start("harness", lang="en")
    compose = next(f for f in loaded_frames(page) if f.url.endswith("/chat/compose"))
    compose.wait_for_load_state("domcontentloaded")
    compose.evaluate("document.querySelector('label[for=text]').remove()")  # the textarea loses its label
    page.evaluate("document.documentElement.removeAttribute('lang')")
    found = axe(page)
    assert any("label" in line and "#text" in line for line in found), found
    assert any("html-has-lang" in line for line in found), found


def test_visitor_pages_pass_axe_in_english_dutch_and_arabic(server: LiveServer, browsers: Browsers) -> None:
    staff = browsers.page(script=False)
    Counsellor(staff, server).log_in_still("carla")
    problems: list[str] = []
    for lang in VISITOR_LANGS:
        visitor = browsers.page(script=True)
        go(visitor, f"{server.visitor_url}lang/{lang}")
        expect(visitor.locator("html")).to_have_attribute("dir", "rtl" if lang == "ar" else "ltr")
        problems += axe(visitor)  # landing, with the JavaScript banner showing (script is on here)
        for path in ("safety", "goodbye", "no/such/page"):
            go(visitor, server.visitor_url + path)
            problems += axe(visitor)
        nickname = f"axe-{lang}"
        Visitor(visitor, server).start(nickname, lang=lang)
        problems += axe(visitor)  # waiting: passphrase, messages frame in line, compose frame
        cid = Counsellor(staff, server).accept_still(nickname)
        Counsellor(staff, server).send_in(cid, f"Hello from carla ({lang})")
        visitor.reload(wait_until="domcontentloaded")
        expect(visitor.frame_locator(".messages-frame").get_by_text(f"Hello from carla ({lang})")).to_be_visible()
        problems += axe(visitor)  # chatting, updates live
        # The second steps: Leave chat, More (with Delete, Staying safe, the languages), Delete.
        for step in (".controls > details > summary", ".controls details details > summary"):
            for summary in visitor.locator(step).all():
                summary.click()
        problems += axe(visitor)
        frame = visitor.frame_locator(".messages-frame")
        frame.locator(".frame-controls a").first.click()  # Hold the messages still
        expect(frame.locator(".frame-controls a")).to_have_count(2)  # Check for new messages, Show ... again
        problems += axe(visitor)  # paused
        for path in ("danger", "danger?frame=1"):  # the advice as a page, and as the messages frame shows it
            go(visitor, server.visitor_url + path)
            problems += axe(visitor)
        go(visitor, server.visitor_url + "chat/messages?paused=1")
        problems += axe(visitor)  # the frame on its own, as a screen reader user may open it
        go(visitor, server.visitor_url + "chat/history")
        problems += axe(visitor)  # earlier messages, on their own
        go(staff, f"{server.staff_url}chat/{cid}")
        Counsellor(staff, server).end_chat()
        staff.wait_for_url(re.compile(r"/wrapup/"))
        go(visitor, server.visitor_url + "chat")
        problems += axe(visitor)  # ended
    assert problems == []


def test_staff_pages_pass_axe_in_english_and_dutch(server: LiveServer, browsers: Browsers) -> None:
    visitor = browsers.page(script=False)
    go(visitor, server.visitor_url)
    visitor.locator("#nickname").fill("axe-staff")
    visitor.get_by_role("button", name="Start chat").click()
    visitor.frame_locator(".compose-frame").get_by_label("Your message").fill("Is anyone there?")
    visitor.frame_locator(".compose-frame").get_by_role("button", name="Send").click()
    problems: list[str] = []
    login = browsers.page(script=True)
    for lang in STAFF_LANGS:
        go(login, f"{server.staff_url}lang/{lang}")
        go(login, server.staff_url + "login")
        problems += axe(login)
    carla = browsers.page(script=True)
    Counsellor(carla, server).log_in_still("carla")
    go(carla, server.staff_url)
    problems += axe(carla)  # the workspace (status, board, free panes) with a visitor waiting
    cid = Counsellor(carla, server).accept_still("axe-staff")
    Counsellor(carla, server).send_in(cid, "Hello, I am here.")
    sam = browsers.page(script=True)
    Counsellor(sam, server).log_in_still("sam")
    ada = browsers.page(script=True)
    Counsellor(ada, server).log_in_still("ada")
    for lang in STAFF_LANGS:
        for page in (carla, sam, ada):
            go(page, f"{server.staff_url}lang/{lang}")
        # The workspace with a chat in a pane, its frames and nested frames included; the
        # supervisors' self-updating overview is checked as its still copy (updates paused).
        for path in ("", f"chat/{cid}", f"chat/{cid}/history", "account", "alerts"):
            go(carla, server.staff_url + path)
            problems += axe(carla)
        for path in ("supervise?paused=1", f"supervise/{cid}", "stats"):
            go(sam, server.staff_url + path)
            problems += axe(sam)
        for path in ("admin/staff", "admin/staff/carla", "admin/canned", "admin/audit"):
            go(ada, server.staff_url + path)
            problems += axe(ada)
    # Logging out with a chat open asks who takes it over (the pages are in Dutch by now).
    go(carla, server.staff_url + "account")
    carla.get_by_role("button", name=re.compile("Log out|Uitloggen")).click()
    expect(carla.locator("h1")).to_have_text(re.compile("Your open chats|Jouw open chats"))
    problems += axe(carla)
    go(carla, f"{server.staff_url}chat/{cid}")
    Counsellor(carla, server).end_chat()
    carla.wait_for_url(re.compile(r"/wrapup/"))
    problems += axe(carla)  # the wrap-up form
    go(carla, server.staff_url + "wrapup")
    problems += axe(carla)
    assert problems == []


def test_keyboard_skip_link_visible_focus_and_order(server: LiveServer, browsers: Browsers) -> None:
    page = browsers.page(script=True)
    go(page, server.visitor_url + "lang/en")
    page.keyboard.press("Tab")
    focused = page.evaluate("""() => { const e = document.activeElement, s = getComputedStyle(e);
        const r = e.getBoundingClientRect();
        return {text: e.textContent.trim(), outline: s.outlineStyle, width: parseFloat(s.outlineWidth),
                visible: r.width > 0 && r.left >= 0 && r.top >= 0}; }""")
    assert focused == {"text": "Skip to content", "outline": "solid", "width": 3.0, "visible": True}
    page.keyboard.press("Enter")
    assert page.url.endswith("#main")
    # Every focusable control in document order: the order a keyboard user meets them.
    go(page, server.visitor_url)
    order: list[str] = []
    for _ in range(40):
        page.keyboard.press("Tab")
        label = page.evaluate("""() => { const e = document.activeElement;
            const named = e.labels && e.labels[0] ? e.labels[0] : e;
            return e === document.body ? '' : named.textContent.trim(); }""")
        if not label or label in order:
            break
        order.append(label)
    wanted = ["Skip to content", "Quick exit", "English", "العربية", "Nickname (optional)", "Start chat",
              "Your return code", "Resume chat"]
    assert [item for item in order if item in wanted] == wanted, order
    assert "More about staying safe" in order


@pytest.mark.parametrize("viewport", [PHONE, {"width": 640, "height": 400}, {"width": 320, "height": 640}],
                         ids=["phone-360x740", "zoom-200pc", "reflow-320"])
def test_no_page_scrolls_sideways_and_the_compose_box_is_reachable(server: LiveServer, browsers: Browsers,
                                                                   viewport: ViewportSize) -> None:
    """360x740 (a phone); 640 px wide = 1280 px at 200% zoom; 320 px = WCAG's reflow width."""
    problems: list[str] = []
    for lang in ("en", "ar"):
        page = browsers.page(script=True, viewport=viewport)
        go(page, f"{server.visitor_url}lang/{lang}")
        for path in ("", "safety", "goodbye"):
            go(page, server.visitor_url + path)
            problems += Screen(page).overflow()
        Visitor(page, server).start(f"phone-{lang}", lang=lang)
        page.frame_locator(".compose-frame").locator("#text").wait_for()
        problems += Screen(page).overflow()
        compose = page.frame_locator(".compose-frame")
        page.locator(".compose-frame").scroll_into_view_if_needed()
        frame_box = page.locator(".compose-frame").bounding_box()
        assert frame_box is not None
        for control in (compose.locator("#text"), compose.locator("button[type=submit]")):
            box = control.bounding_box()
            assert box is not None and box["width"] > 0 and box["height"] >= 24, (lang, viewport, box)
            # Whole inside the compose frame: a frame clips what does not fit, and a visitor may
            # not think of scrolling inside a frame to find the Send button.
            assert frame_box["y"] <= box["y"] and box["y"] + box["height"] <= frame_box["y"] + frame_box["height"], (
                lang, viewport, box, frame_box)
            assert frame_box["x"] <= box["x"] and box["x"] + box["width"] <= frame_box["x"] + frame_box["width"], (
                lang, viewport, box, frame_box)
        for button in page.locator(".controls > form button, .controls > details > summary, .quick-exit").all():
            button.scroll_into_view_if_needed()
            assert button.is_visible(), (lang, viewport)
    assert problems == []


def test_pause_and_check_for_new_messages_with_javascript_off(server: LiveServer, browsers: Browsers) -> None:
    """Pausing stops the self-updates (no Refresh); "Check for new messages" fetches once; Resume resumes."""
    staff = browsers.page(script=False)
    Counsellor(staff, server).log_in_still("carla")
    visitor = browsers.page(script=False)
    go(visitor, server.visitor_url + "lang/en")
    visitor.locator("#nickname").fill("pauser")
    visitor.get_by_role("button", name="Start chat").click()
    cid = Counsellor(staff, server).accept_still("pauser")
    messages = visitor.frame_locator(".messages-frame")
    expect(messages.get_by_text("A counsellor has joined the chat.")).to_be_visible()
    # The log's structure: a heading, then an ordered list with one item per message.
    expect(messages.get_by_role("heading", name="Messages")).to_have_count(1)
    expect(messages.get_by_role("list")).to_have_count(1)
    with visitor.expect_response(re.compile(r"/chat/messages\?paused=1")) as paused:
        messages.get_by_role("link", name="Hold the messages still").click()
    assert "refresh" not in {k.lower() for k in paused.value.headers}
    assert b'http-equiv="refresh"' not in paused.value.body()
    Counsellor(staff, server).send_in(cid, "Sent while paused")
    expect(messages.get_by_text("Sent while paused")).to_have_count(0)  # nothing reloaded by itself
    messages.get_by_role("link", name="Check for new messages").click()
    expect(messages.get_by_text("Sent while paused")).to_be_visible()
    resume = messages.get_by_role("link", name="Show new messages by themselves again")
    expect(resume).to_be_visible()  # still paused
    resume.click()
    expect(messages.get_by_role("link", name="Hold the messages still")).to_be_visible()
    Counsellor(staff, server).send_in(cid, "Live again")
    expect(messages.get_by_text("Live again")).to_be_visible()  # arrived without any click


@pytest.mark.parametrize("lang", ["en", "ar"])
def test_screenshots_of_the_main_pages_at_phone_and_desktop_widths(server: LiveServer, browsers: Browsers,
                                                                   lang: str) -> None:
    """JavaScript off, as a visitor at Safest sees them; into test-artifacts/screenshots/a11y-*.png."""
    staff = browsers.page(script=False)
    Counsellor(staff, server).log_in_still("carla")
    for width, viewport in (("phone", PHONE), ("desktop", DESKTOP)):
        page = browsers.page(script=False, viewport=viewport)
        go(page, f"{server.visitor_url}lang/{lang}")
        expect(page.locator(".js-warning")).to_be_hidden()  # JavaScript is off: no banner
        shoot(page, full_page=True, name=f"a11y-landing-{lang}-{width}")
        go(page, server.visitor_url + "safety")
        shoot(page, full_page=True, name=f"a11y-safety-{lang}-{width}")
        nickname = f"shot-{lang}-{width}"
        go(page, server.visitor_url)
        page.locator("#nickname").fill(nickname)
        page.locator("form[action='/start'] button").click()
        page.frame_locator(".messages-frame").locator(".waiting").first.wait_for()
        shoot(page, full_page=True, name=f"a11y-waiting-{lang}-{width}")
        cid = Counsellor(staff, server).accept_still(nickname)
        Counsellor(staff, server).send_in(cid, "Hello. I am Carla. You are safe to write here; take your time.")
        page.frame_locator(".compose-frame").locator("#text").fill("I am not sure I can talk long")
        page.frame_locator(".compose-frame").locator("button[type=submit]").click()
        expect(page.frame_locator(".messages-frame").get_by_text("I am not sure")).to_be_visible()
        page.frame_locator(".compose-frame").locator("#text").fill("typed but not sent")
        shoot(page, full_page=True, name=f"a11y-chat-{lang}-{width}")
        if lang == "en":
            staff.set_viewport_size(viewport)
            go(staff, f"{server.staff_url}chat/{cid}")
            staff.frame_locator(".messages-frame").get_by_text("I am not sure").wait_for()
            shoot(staff, full_page=True, name=f"a11y-staff-chat-{width}")
            go(staff, server.staff_url)
            shoot(staff, full_page=True, name=f"a11y-staff-workspace-{width}")
        page.locator(".controls > details > summary").first.click()  # Leave chat: the second step opens
        page.locator("form[action='/chat/leave'] button").click()
        page.wait_for_url(re.compile("/goodbye"))
        shoot(page, full_page=True, name=f"a11y-goodbye-{lang}-{width}")
    # JavaScript on: the banner asking for Safest shows (and only then).
    scripted = browsers.page(script=True)
    go(scripted, f"{server.visitor_url}lang/{lang}")
    expect(scripted.locator(".js-warning")).to_be_visible()
    shoot(scripted, full_page=True, name=f"a11y-landing-js-on-{lang}")
