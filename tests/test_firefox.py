"""Firefox ESR (Tor Browser's engine) with JavaScript off, over Marionette: a visitor's chat, on a phone too."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.firefox import NARROWEST, By, Marionette, WebElement, launched, set_viewport
from tests.liveserver import LiveServer, NeutralPage, wait_until
from tests.pages import (
    STEP_MS,
    StaffClient,
    firefox_rect,
    frame_text,
    in_frame,
    inside_view,
    measure,
    serving,
    shoot_firefox,
    wait_for,
)

pytestmark = pytest.mark.browser

DELIVERY_LIMIT_S = 1.0  # as in chromium: a reply appears within a second, without any reload
PHONE_HEIGHT = 740
AVERAGE = "Thank you for telling me. Can you say a little more about where you are right now?"
MESSAGES, COMPOSE = ".messages-frame", ".compose-frame"


@pytest.fixture(scope="module")
def firefox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Marionette]:
    """Debian's firefox-esr, headless, JavaScript off, with a Marionette session (no geckodriver)."""
    with launched(tmp_path_factory.mktemp("firefox-profile")) as client:
        yield client


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, NeutralPage]]:
    with serving(tmp_path_factory.mktemp("firefox"), staff={"carla": "counsellor"}) as served:
        yield served


def compose(client: Marionette, read: Callable[[Marionette], Any]) -> Any:
    """Run ``read`` in the compose frame."""
    return in_frame(client, COMPOSE, read)


def box(client: Marionette) -> WebElement:
    return client.find_element(By.ID, "text")


def start(client: Marionette, live: LiveServer, nickname: str) -> None:
    """Landing page, nickname, Start chat: the chat page."""
    client.navigate(live.visitor_url)
    client.find_element(By.ID, "nickname").send_keys(nickname)
    client.find_element(By.CSS_SELECTOR, "form[action='/start'] button").click()
    wait_for(client, lambda c: c.get_url().endswith("/chat"), "the chat page")


def test_a_whole_conversation_in_firefox_esr_with_javascript_off(firefox: Marionette,
                                                                   server: tuple[LiveServer, NeutralPage]) -> None:
    live, neutral = server
    client = firefox
    client.set_window_rect(width=1280, height=900)
    counsellor = StaffClient(live)
    counsellor.login("carla")

    client.navigate(live.visitor_url)
    assert client.find_element(By.CSS_SELECTOR, "h1").text == "Talk to a counsellor, anonymously"
    # JavaScript is off: the <noscript> stylesheet hides the banner asking for Safest.
    assert not client.find_element(By.CSS_SELECTOR, ".js-warning").is_displayed()
    shoot_firefox(client, "landing")

    start(client, live, "fox")
    wait_for(client, lambda c: "in line" in frame_text(c, MESSAGES), "the place in line")
    shoot_firefox(client, "waiting")

    compose(client, lambda c: box(c).send_keys("Hello from Firefox"))
    compose(client, lambda c: c.find_element(By.CSS_SELECTOR, "button[type=submit]").click())
    wait_for(client, lambda c: "Hello from Firefox" in frame_text(c, MESSAGES), "the visitor's own message")

    cid = counsellor.accept("fox")
    wait_for(client, lambda c: "A counsellor has joined the chat." in frame_text(c, MESSAGES), "the join")
    wait_for(client, lambda c: compose(c, lambda d: d.find_elements(By.ID, "text")), "the compose box")
    compose(client, lambda c: box(c).send_keys("typed but not sent"))

    began = time.perf_counter()
    counsellor.send(cid, "Hello fox, I am Carla.")
    wait_for(client, lambda c: "Hello fox, I am Carla." in frame_text(c, MESSAGES), "the reply, without reload")
    delivery = time.perf_counter() - began
    print(f"firefox-esr: reply shown {delivery * 1000:.0f} ms after the counsellor sent it")
    assert delivery < DELIVERY_LIMIT_S
    assert compose(client, lambda c: box(c).get_property("value")) == "typed but not sent"
    assert client.get_url().endswith("/chat")  # the page itself never reloaded
    shoot_firefox(client, "chat")

    client.find_element(By.CSS_SELECTOR, "a.quick-exit").click()
    wait_for(client, lambda c: c.get_url() == neutral.url, "the neutral page")
    assert client.title == NeutralPage.TITLE
    # The chat ended on the server too, and the counsellor is told how.
    wait_until(lambda: "Quick exit" in counsellor.messages(cid), STEP_MS / 1000, "the counsellor seeing the quick exit")


def test_a_phone_sized_chat_in_firefox_esr_keeps_quick_exit_danger_and_drafts(
        firefox: Marionette, server: tuple[LiveServer, NeutralPage]) -> None:
    """Firefox's narrowest window (500 CSS px) at a phone's height: the same promises as in chromium."""
    live, _ = server
    client = firefox
    width, height = set_viewport(client, NARROWEST, PHONE_HEIGHT)
    assert (width, height) == (NARROWEST, PHONE_HEIGHT), (width, height)
    counsellor = StaffClient(live)
    counsellor.login("carla")
    start(client, live, "phone")
    client.find_element(By.CSS_SELECTOR, "details.passphrase summary").click()  # "tap to hide"
    cid = counsellor.accept("phone")
    wait_for(client, lambda c: "A counsellor has joined the chat." in frame_text(c, MESSAGES), "the join")

    figures = []
    for n in range(1, 7):
        counsellor.send(cid, f"{n}. {AVERAGE}")
        wait_for(client, lambda c, n=n: f"{n}. Thank you" in frame_text(c, MESSAGES), f"message {n}")  # type: ignore[misc]
        seen = measure(client, MESSAGES, "li.msg:not(.from-system)", COMPOSE)
        exit_box = firefox_rect(client, "a.quick-exit")
        figures.append((n, seen["scroll"][1], round(exit_box["y"]), seen["visible"]))
        assert seen["scroll"] == [0, 0], f"message {n} scrolled the page: {seen}"
        assert inside_view(exit_box, width, height), f"Quick exit off screen after message {n}: {exit_box}"
        assert seen["visible"] >= min(n, 3), f"after message {n}: {seen['visible']} messages in view"
    print(f"\nfirefox-esr {width}x{height}: (message, page scrollY, Quick exit y, messages in view) {figures}")
    shoot_firefox(client, "phone-chat")

    # I am in danger now: the advice in the messages frame, the number on screen, the draft kept.
    compose(client, lambda c: box(c).send_keys("half a sentence"))
    client.find_element(By.CSS_SELECTOR, "form[action='/chat/urgent'] button").click()
    wait_for(client, lambda c: "112" in frame_text(c, MESSAGES), "the emergency number in the messages frame")
    number = in_frame(client, MESSAGES, lambda c: c.find_element(By.CSS_SELECTOR, ".danger-number").rect)
    frame = firefox_rect(client, MESSAGES)
    assert inside_view({"x": frame["x"] + number["x"], "y": frame["y"] + number["y"], "width": number["width"],
                        "height": number["height"]}, width, height), (frame, number)
    assert compose(client, lambda c: box(c).get_property("value")) == "half a sentence"
    wait_until(lambda: "I am in danger now" in counsellor.messages(cid), STEP_MS / 1000, "the counsellor's line")
    shoot_firefox(client, "phone-danger")
    in_frame(client, MESSAGES, lambda c: c.find_element(By.LINK_TEXT, "Back to the messages").click())
    wait_for(client, lambda c: "The counsellor has been told" in frame_text(c, MESSAGES), "the messages again")

    # The counsellor ends the chat while the visitor types: Send gives the text back.
    counsellor.end(cid)
    wait_for(client, lambda c: "ended the chat" in frame_text(c, MESSAGES), "the end")
    compose(client, lambda c: c.find_element(By.CSS_SELECTOR, "button[type=submit]").click())
    unsent = wait_for(client, lambda c: compose(c, lambda d: d.find_element(By.ID, "unsent").get_property("value")),
                      "the unsent text shown back")
    assert unsent == "half a sentence"
    # After the end the danger button still shows the number.
    client.find_element(By.CSS_SELECTOR, "form[action='/chat/urgent'] button").click()
    wait_for(client, lambda c: "112" in frame_text(c, MESSAGES), "the emergency number after the end")
    shoot_firefox(client, "phone-ended-danger")
