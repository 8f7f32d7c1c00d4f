"""Debian's firefox-esr (Tor Browser's engine) for the browser tests: JavaScript off, loopback only, Marionette."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.liveserver import LOOPBACK, free_port, wait_until

with warnings.catch_warnings():
    # marionette_driver's own imports warn (mozinfo calls distro.linux_distribution(), mozdevice
    # imports telnetlib); nothing of ours is hidden by this.
    warnings.filterwarnings("ignore", "distro.linux_distribution", DeprecationWarning)
    warnings.filterwarnings("ignore", "'telnetlib' is deprecated", DeprecationWarning)
    from marionette_driver import errors as marionette_errors
    from marionette_driver.by import By
    from marionette_driver.marionette import Marionette, WebElement
    from marionette_driver.wait import Wait

__all__ = ["NARROWEST", "By", "Marionette", "Wait", "WebElement", "launched", "marionette_errors", "set_viewport"]

FIREFOX = os.environ.get("ONIONCHAT_FIREFOX", "firefox-esr")
# Firefox's smallest window is 500 CSS px wide; the phone tests use that width and a phone's height.
NARROWEST = 500

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
    """One user.js line."""
    text = ("true" if value else "false") if isinstance(value, bool) else (
        str(value) if isinstance(value, int) else '"' + str(value) + '"')
    return f'user_pref("{name}", {text});'


@contextmanager
def launched(profile: Path) -> Iterator[Marionette]:
    """firefox-esr, headless, JavaScript off, with a Marionette session (no geckodriver), in ``profile``.

    A missing firefox-esr skips here and fails in CI (tests/conftest.py turns skips into failures).
    """
    binary = shutil.which(FIREFOX)
    if binary is None:
        pytest.skip(f"{FIREFOX} is missing: apt-get install -y firefox-esr")
    port = free_port()
    (profile / "user.js").write_text("\n".join([pref_line("marionette.port", port)]
                                               + [pref_line(k, v) for k, v in PREFS.items()]) + "\n")
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env["MOZ_HEADLESS"] = "1"
    with (profile / "firefox.log").open("wb") as log:
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


def set_viewport(client: Marionette, width: int, height: int) -> tuple[int, int]:
    """Size the window so that the page's viewport is ``width`` × ``height`` CSS px (as near as Firefox allows)."""
    client.set_window_rect(width=width, height=height)
    inner = client.execute_script("return [window.innerWidth, window.innerHeight];", sandbox="system")
    client.set_window_rect(width=width + (width - inner[0]), height=height + (height - inner[1]))
    got = client.execute_script("return [document.documentElement.clientWidth, document.documentElement.clientHeight];",
                                sandbox="system")
    return int(got[0]), int(got[1])
