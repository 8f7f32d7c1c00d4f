"""Debian's chromium for the browser tests: where it is, how it is launched, the screen sizes."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from playwright.sync_api import Browser, ViewportSize, expect, sync_playwright

CHROMIUM = os.environ.get("ONIONCHAT_CHROMIUM", "/usr/bin/chromium")
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
               "--disable-sync", "--no-first-run"]
PHONE: ViewportSize = {"width": 360, "height": 740}
DESKTOP: ViewportSize = {"width": 1280, "height": 800}


@contextmanager
def launched(step_ms: int) -> Iterator[Browser]:
    """One chromium for a test module, ``expect`` waiting up to ``step_ms``.

    A missing chromium skips here and fails in CI (tests/conftest.py turns skips into failures).
    """
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"{CHROMIUM} is missing: apt-get install -y chromium")
    expect.set_options(timeout=step_ms)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        try:
            yield browser
        finally:
            browser.close()
