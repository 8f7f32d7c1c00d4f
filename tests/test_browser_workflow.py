"""Issue 4's helpline workflow in Debian's chromium with JavaScript off, against a real server.

urgent visitor -> supervisor notified -> counsellor accepts -> canned reply inserted mid-typing
-> transfer -> wrap-up -> the statistics page shows the counts.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from tests.chromium import DESKTOP, launched
from tests.liveserver import live_server
from tests.pages import STEP_MS, Counsellor, Screen, Visitor, until

pytestmark = pytest.mark.browser

CANNED_TEXT = "You are not alone. We can help you find a safe place."


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One chromium for the module."""
    with launched(STEP_MS) as chromium:
        yield chromium


def test_urgent_canned_transfer_wrapup_stats(tmp_path: Path, browser: Browser) -> None:
    # The canned reply is written before start, in canned.py's format, into our own data dir.
    data_dir = tmp_path / "data"
    data_dir.mkdir(mode=0o700)
    (data_dir / "canned.json").write_text(json.dumps({"version": 1, "replies": [
        {"id": "safe1", "lang": "en", "title": "Safe place", "text": CANNED_TEXT}]}), encoding="utf-8")
    os.chmod(data_dir / "canned.json", 0o600)
    # suppress_below = 1 turns small-cell suppression off, so the page shows the real counts ("1").
    settings: dict[str, dict[str, object]] = {
        "server": {"data_dir": str(data_dir)}, "hours": {"open_without_staff": True},
        "stats": {"suppress_below": 1}}
    staff = {"carla": "counsellor", "dirk": "counsellor", "sam": "supervisor"}
    contexts: list[BrowserContext] = []

    def new_page() -> Page:
        context = browser.new_context(java_script_enabled=False, viewport=DESKTOP)
        context.set_default_timeout(STEP_MS)
        contexts.append(context)
        return context.new_page()

    with live_server(tmp_path, settings, staff) as server:
        try:
            sam = Counsellor(new_page(), server)
            sam.log_in("sam")
            # The supervisor keeps the alerts tab open beside the workspace.
            alerts = sam.page.context.new_page()
            alerts.goto(server.staff_url + "alerts")
            # Urgent visitor: the advice shows at once; with a first message written, the chat
            # jumps the line (a press before any message waits for one: docs/abuse.md).
            visitor = Visitor(new_page(), server)
            visitor.start("Mira")
            visitor.send("please help me")
            visitor.page.get_by_role("button", name="I am in danger now").click()
            expect(visitor.messages.locator(".danger-number")).to_have_text("112")  # in the messages frame
            visitor.messages.get_by_role("link", name="Back to the messages").click()
            # Supervisor notified: the alerts tab's title (it reloads itself), and its list.
            until(lambda: Screen(alerts).tab_title().startswith("URGENT"), "sam's alerts tab titled URGENT")
            expect(alerts.locator(".alert-list")).to_contain_text("urgent chat")

            carla = Counsellor(new_page(), server)
            carla.log_in("carla")
            dirk = Counsellor(new_page(), server)
            dirk.log_in("dirk")
            carla.accept("Mira")
            visitor.sees("A counsellor has joined the chat.")

            # Canned reply inserted mid-typing: what was typed stays.
            carla.box.fill("Hello, ")
            carla.compose.get_by_label("Canned reply").select_option(label="Safe place (en)")
            carla.compose.get_by_role("button", name="Insert").click()
            expect(carla.box).to_have_value(f"Hello,\n{CANNED_TEXT}")
            carla.send_button.click()
            expect(carla.box).to_have_value("")
            visitor.sees(CANNED_TEXT)

            # Transfer to dirk with a staff-only reason: carla's pane is free again.
            carla.chat.get_by_text("Transfer or block").click()
            carla.chat.get_by_label("Transfer to").select_option("dirk")
            carla.chat.get_by_label("Why (only staff see this)").fill("needs Polish")
            carla.chat.get_by_role("button", name="Transfer", exact=True).click()
            expect(carla.chat.get_by_role("heading", name=f"Pane {carla.pane} is free")).to_be_visible()
            # Dirk's board highlights the chat handed to him until he opens it in its pane.
            dirk.board_shows("handed over to you")
            dirk.page.frame_locator(dirk.BOARD).get_by_role("link", name="Mira").click(no_wait_after=True)
            dirk.pane = dirk.pane_of("Mira")
            dirk.sees("needs Polish")
            until(lambda: "handed over" not in dirk.board(), "the highlight gone once opened")
            visitor.sees("Another counsellor has taken over the chat")
            assert "needs Polish" not in visitor.shown()

            # End (a second step) and wrap-up, in the pane.
            dirk.end_chat()
            expect(dirk.chat.get_by_role("heading", name="Wrap-up")).to_be_visible()
            for answer in ("real", "16-17", "labour", "1-12 months", "more than one", "shelter"):
                dirk.chat.get_by_label(answer, exact=True).check()
            dirk.chat.get_by_role("button", name="Save wrap-up").click()
            expect(dirk.chat.get_by_role("heading", name=f"Pane {dirk.pane} is free")).to_be_visible()
            assert "needs Polish" not in visitor.shown()

            # Statistics: exact counts, suppression being off.
            stats_page = sam.page.context.new_page()  # sam's cookies; his workspace stays open
            stats_page.goto(server.staff_url + "stats")

            def row(caption: str, label: str) -> str:
                table = stats_page.locator("table.stats", has=stats_page.locator("caption", has_text=caption))
                return table.locator("tr", has=stats_page.get_by_role("rowheader", name=label, exact=True)) \
                    .locator("td.num").first.inner_text().strip()

            assert row("Chats offered", "answered") == "1"
            assert row("Wrap-ups", "filed") == "1"
            assert row("Kind of contact", "real") == "1"
            for answer in ("16-17", "labour", "1-12 months", "more than one", "shelter"):
                assert row("", answer) == "1", answer
            total = stats_page.locator("table.stats", has=stats_page.locator("caption", has_text="Chats offered"))
            expect(total.locator("tfoot td.num")).to_have_text("1")
        finally:
            for context in contexts:
                context.close()
