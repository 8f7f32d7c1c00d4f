"""A visitor on a 360×740 phone, in Debian's chromium with JavaScript off: what stays on screen, measured.

Each test prints its figures. The counsellor works over plain HTTP (tests/pages.StaffClient):
what is measured here is the visitor's browser.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from playwright.sync_api import Browser, BrowserContext, expect

from onionchat.i18n import VISITOR_LANGUAGES
from tests.chromium import PHONE, launched
from tests.liveserver import LiveServer
from tests.pages import STEP_MS, StaffClient, Visitor, go, inside_view, serving, shoot, until

pytestmark = pytest.mark.browser

WIDTH, HEIGHT = PHONE["width"], PHONE["height"]
# An average chat message: 84 characters, three lines on this phone (the counsellor's are often longer).
AVERAGE = "Thank you for telling me. Can you say a little more about where you are right now?"
HOLD_S = 1  # a short hold: quiet reloads of the messages frame come every second
QUICK_EXIT = "a.quick-exit"
DANGER = "form[action='/chat/urgent'] button"

NewPhone = Callable[[], Visitor]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with launched(STEP_MS) as chromium:
        yield chromium


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with serving(tmp_path_factory.mktemp("phone"), {"poll": {"hold_seconds": HOLD_S}}, {"carla": "counsellor"}) as (
            live, _):
        yield live


@pytest.fixture
def staff(server: LiveServer) -> StaffClient:
    """Carla, logged in (so the line is open), answering over HTTP."""
    carla = StaffClient(server)
    carla.login("carla")
    return carla


@pytest.fixture
def phone(browser: Browser, server: LiveServer) -> Iterator[NewPhone]:
    """Factory: a visitor's tab in a fresh private context, 360×740, JavaScript off (Tor Browser at Safest)."""
    contexts: list[BrowserContext] = []

    def make() -> Visitor:
        context = browser.new_context(java_script_enabled=False, viewport=PHONE)
        context.set_default_timeout(STEP_MS)
        contexts.append(context)
        return Visitor(context.new_page(), server)

    yield make
    for context in contexts:
        context.close()


def chatting(phone: NewPhone, staff: StaffClient, nickname: str) -> tuple[Visitor, str]:
    """A visitor whose chat carla accepted; the chat id."""
    visitor = phone()
    visitor.start(nickname)
    cid = staff.accept(nickname)
    visitor.sees("A counsellor has joined the chat.")
    return visitor, cid


def assert_quick_exit_in_view(visitor: Visitor, when: str) -> dict[str, float]:
    box = visitor.screen.rect(QUICK_EXIT)
    assert inside_view(box, WIDTH, HEIGHT), f"Quick exit is off screen {when}: {box}"
    assert box is not None
    return box


def test_start_chat_is_on_the_first_screen_in_every_language(server: LiveServer, phone: NewPhone,
                                                            staff: StaffClient) -> None:
    visitor = phone()  # with a counsellor logged in: the line is open
    bottoms = {}
    for lang in VISITOR_LANGUAGES:
        go(visitor.page, f"{server.visitor_url}lang/{lang}")
        box = visitor.screen.rect("form[action='/start'] button")
        assert inside_view(box, WIDTH, HEIGHT), f"Start chat is not on the first screen in {lang}: {box}"
        assert box is not None
        bottoms[lang] = round(box["bottom"])
        assert visitor.screen.overflow() == [], lang
    print(f"\nStart chat's lower edge on a {WIDTH}x{HEIGHT} screen, px from the top: {bottoms}")
    go(visitor.page, f"{server.visitor_url}lang/en")
    shoot(visitor.page, "visitor-phone-landing")


def test_the_page_stays_put_and_shows_three_messages_while_they_arrive(phone: NewPhone, staff: StaffClient) -> None:
    visitor, cid = chatting(phone, staff, "Mira")
    figures: list[tuple[str, float, int, int]] = []

    def arrived(label: str, text: str, at_least: int) -> None:
        visitor.sees(text)
        seen = visitor.layout()
        exit_box = assert_quick_exit_in_view(visitor, f"after {label}")
        figures.append((label, seen["scroll"][1], round(exit_box["y"]), seen["visible"]))
        assert seen["scroll"] == [0, 0], f"{label} scrolled the page: {seen}"
        assert seen["visible"] >= at_least, f"after {label}: {seen['visible']} messages wholly in view, {seen}"

    # The return code is open at first: it costs a message's room until the visitor hides it.
    for n in range(1, 4):
        staff.send(cid, f"{n}. {AVERAGE}")
        arrived(f"message {n} (return code open)", f"{n}. Thank you", min(n, 2))
    visitor.page.locator("details.passphrase > summary").click()  # "tap to hide"
    for n in range(4, 9):
        if n % 2:
            visitor.send(f"{n}. I am at a house near the station, they keep my passport here.")
            arrived(f"message {n} (the visitor's)", f"{n}. I am at a house", 3)
        else:
            staff.send(cid, f"{n}. {AVERAGE}")
            arrived(f"message {n}", f"{n}. Thank you", 3)
    # Quiet reloads: the frame asks again every HOLD_S without a change; nothing moves.
    for n in (1, 2):
        with visitor.page.expect_response(lambda r: "/chat/messages?v=" in r.url, timeout=STEP_MS):
            pass
        arrived(f"quiet reload {n}", "8. Thank you", 3)
    # Nothing to scroll: the page is exactly the screen's height.
    assert visitor.screen.evaluate("document.documentElement.scrollHeight") <= HEIGHT
    print(f"\n{WIDTH}x{HEIGHT} (arrival, page scrollY, Quick exit y, average messages wholly in view): {figures}")
    shoot(visitor.page, "visitor-phone-chat")


def test_danger_shows_the_number_where_the_visitor_looks_before_and_after_the_end(
        server: LiveServer, phone: NewPhone, staff: StaffClient) -> None:
    # Before any chat: every visitor page ends with the number and a link to the advice.
    visitor = phone()
    go(visitor.page, server.visitor_url)
    expect(visitor.page.locator("footer.emergency")).to_contain_text("112")
    visitor.page.locator("footer.emergency a").click()
    expect(visitor.page.locator(".danger-number")).to_have_text("112")
    shoot(visitor.page, "visitor-phone-danger-page")

    visitor, cid = chatting(phone, staff, "Ines")
    visitor.page.locator("details.passphrase > summary").click()
    visitor.box.fill("they are coming back and")
    visitor.page.locator(DANGER).click()
    # The advice replaces the messages, under the header: the number large and on screen.
    until(lambda: "112" in visitor.shown(), "the emergency number in the messages frame")
    number = visitor.screen.rect(".danger-number", visitor.MESSAGES)
    assert inside_view(number, WIDTH, HEIGHT), number
    assert number is not None and number["height"] >= 48, f"the number is not large: {number}"
    assert_quick_exit_in_view(visitor, "with the advice open")
    expect(visitor.box).to_have_value("they are coming back and")  # the reply box kept the draft
    assert visitor.screen.scroll() == (0, 0)
    shoot(visitor.page, "visitor-phone-danger")
    print(f"\nthe emergency number in the messages frame at {WIDTH}x{HEIGHT}: {number}")
    # The counsellor reads it in the conversation; the visitor too, back in the messages.
    until(lambda: "The visitor pressed “I am in danger now”" in staff.messages(cid), "the counsellor's line")
    visitor.messages.get_by_role("link", name="Back to the messages").click()
    visitor.sees("You pressed “I am in danger now”. The counsellor has been told.")

    # After the chat ended under the visitor, the same button still gives the number.
    staff.end(cid)
    visitor.sees("The counsellor has ended the chat.")
    visitor.page.locator(DANGER).click()
    until(lambda: "112" in visitor.shown(), "the emergency number after the end")
    assert inside_view(visitor.screen.rect(".danger-number", visitor.MESSAGES), WIDTH, HEIGHT)
    expect(visitor.messages.get_by_role("link", name="Back to the start page")).to_be_visible()


def test_leave_and_delete_take_a_second_tap(server: LiveServer, phone: NewPhone, staff: StaffClient) -> None:
    visitor, cid = chatting(phone, staff, "Lena")
    leave = visitor.page.get_by_role("button", name="Yes, leave the chat")
    expect(leave).to_be_hidden()
    visitor.page.locator("summary", has_text="Leave chat").click()  # the first tap only opens the step
    expect(leave).to_be_visible()
    expect(visitor.page).to_have_url(server.visitor_url + "chat")
    assert "left the chat" not in staff.messages(cid)
    staff.send(cid, "Still here?")
    visitor.sees("Still here?")  # the chat goes on
    leave.click()
    expect(visitor.page.get_by_role("heading", name="The chat has ended")).to_be_visible()
    until(lambda: "The visitor left the chat." in staff.messages(cid), "the counsellor seeing the visitor leave")

    visitor, cid = chatting(phone, staff, "Nora")
    delete = visitor.page.get_by_role("button", name="Yes, delete it now")
    visitor.page.locator("summary", has_text="More").click()
    expect(delete).to_be_hidden()
    visitor.page.locator("summary", has_text="Delete this conversation now").click()
    expect(delete).to_be_visible()
    assert "deleted the conversation" not in staff.messages(cid)
    delete.click()
    expect(visitor.page.get_by_text("You deleted the conversation.")).to_be_visible()


def test_unsent_text_comes_back_when_the_chat_ends_under_the_visitor(phone: NewPhone, staff: StaffClient) -> None:
    visitor, cid = chatting(phone, staff, "Olga")
    draft = "My boss took my passport and says I owe him"
    visitor.box.fill(draft)
    staff.end(cid)
    visitor.sees("The counsellor has ended the chat.")
    expect(visitor.box).to_have_value(draft)  # nothing reloaded the reply box
    visitor.send_button.click()
    unsent = visitor.compose.locator("#unsent")
    expect(unsent).to_have_value(draft)
    expect(visitor.compose.get_by_text("Your message was not sent")).to_be_visible()
    box = visitor.screen.rect("#unsent", visitor.COMPOSE)
    frame = visitor.screen.rect(visitor.COMPOSE)
    assert box is not None and frame is not None and box["bottom"] <= frame["bottom"] + 0.5, (box, frame)
    shoot(visitor.page, "visitor-phone-ended")
