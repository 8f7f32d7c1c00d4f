"""Staff login against a real ``onionchat serve --local``: real argon2id, real concurrent requests.

In --local mode every request shares one circuit, so the per-circuit budget is raised here (it
is tested in test_login_throttle.py); what is left is exactly the per-account budget.
"""

from __future__ import annotations

import asyncio
import math
import re
import statistics
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.liveserver import PASSWORD, LiveServer, child_env, live_server, onionchat_command

WRONG = "a wrong but long enough password"
ATTEMPTS = 5  # staff.login_attempts (the default)
CSRF_RE = re.compile(r'name="_csrf" value="([^"]+)"')
KNOWN = [f"known{i}" for i in range(4)]
CLI_CHANGED = {"p1": ["passwd", "p1", "--password-stdin"], "p2": ["reset-2fa", "p2"],
               "p3": ["role", "p3", "supervisor"], "p4": ["disable", "p4"], "p5": ["remove", "p5"]}
STAFF = dict.fromkeys(["burst", "flooded", "victim", "fair", *KNOWN, *CLI_CHANGED, "untouched"], "counsellor")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    settings = {"staff": {"login_attempts_per_circuit": 10_000, "login_attempts_per_account": 10_000}}
    with live_server(tmp_path_factory.mktemp("login"), settings, STAFF) as running:
        yield running


class Browser:
    """One browser at the staff site: its own cookies and the login page's CSRF token."""

    def __init__(self, server: LiveServer) -> None:
        self.base = server.staff_url
        self.http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        self.csrf = ""

    async def __aenter__(self) -> Browser:
        await self.get("login")
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.http.close()

    async def get(self, path: str) -> int:
        async with self.http.get(self.base + path, allow_redirects=False) as response:
            match = CSRF_RE.search(await response.text())
            if match:
                self.csrf = match.group(1)
            return response.status

    async def login(self, name: str, password: str) -> tuple[int, float, str]:
        """Status, seconds and page (without its CSRF token) of one login."""
        began = time.perf_counter()
        async with self.http.post(self.base + "login", allow_redirects=False,
                                  data={"_csrf": self.csrf, "username": name, "password": password}) as response:
            page = await response.text()
        return response.status, time.perf_counter() - began, CSRF_RE.sub("", page)


async def browsers(server: LiveServer, count: int) -> list[Browser]:
    return list(await asyncio.gather(*(Browser(server).__aenter__() for _ in range(count))))


async def closed(made: list[Browser]) -> None:
    await asyncio.gather(*(b.__aexit__() for b in made))


async def test_concurrent_wrong_passwords_beyond_the_budget_never_reach_argon2(server: LiveServer) -> None:
    made = await browsers(server, 40)
    results = await asyncio.gather(*(b.login("flooded", WRONG) for b in made))
    await closed(made)
    statuses = sorted(status for status, _, _ in results)
    # 403: checked by argon2 and wrong; 429: refused before it. Before: 40 x 403.
    assert statuses == [403] * ATTEMPTS + [429] * (40 - ATTEMPTS)


async def answered(tasks: list[asyncio.Task[tuple[int, float, str]]], count: int) -> None:
    """Wait until ``count`` of ``tasks`` have their answer (the rest are still at the server)."""
    while sum(t.done() for t in tasks) < count:
        await asyncio.sleep(0.01)


async def test_a_burst_does_not_buy_extra_guesses(server: LiveServer) -> None:
    """29 wrong passwords at once, the right one while they are still being checked: refused.

    Before: every one of the 29 was checked, and the right one let in (~175 guesses a minute).
    """
    made = await browsers(server, 30)
    wrong = [asyncio.create_task(b.login("burst", WRONG)) for b in made[:-1]]
    await answered(wrong, 29 - ATTEMPTS)  # those refused at once: all 29 have arrived
    right = await made[-1].login("burst", PASSWORD)
    results = await asyncio.gather(*wrong)
    await closed(made)
    assert right[0] == 429
    assert sorted(s for s, _, _ in results) == [403] * ATTEMPTS + [429] * (29 - ATTEMPTS)


async def test_a_flood_for_one_account_does_not_hold_up_another(server: LiveServer) -> None:
    """60 fake logins for one account, then a colleague's real one: it gets the next turn at argon2.

    Before: the real login waited behind all sixty (18.6 s). Now only five fakes reach argon2
    (the others are refused at once), and the real one is served right after the one running.
    """
    fakes = await browsers(server, 60)
    (real,) = await browsers(server, 1)
    order: list[int | str] = []

    async def fake(browser: Browser) -> tuple[int, float, str]:
        result = await browser.login("fair", WRONG)
        order.append(result[0])
        return result

    tasks = [asyncio.create_task(fake(b)) for b in fakes]
    await answered(tasks, 60 - ATTEMPTS)  # every fake has arrived; five wait for argon2
    status, _, _ = await real.login("victim", PASSWORD)
    order.append("real")
    await asyncio.gather(*tasks)
    await closed([*fakes, real])
    assert status == 303
    checked_before = order[: order.index("real")].count(403)
    assert order.count(403) == ATTEMPTS and checked_before <= 2, order


def mann_whitney_p(a: list[float], b: list[float]) -> float:
    """Two-sided p-value of the Mann-Whitney U test (normal approximation, ties corrected)."""
    values = sorted([(v, 0) for v in a] + [(v, 1) for v in b])
    n1, n2, n = len(a), len(b), len(values)
    ranks: list[float] = [0.0] * n
    ties = 0.0
    i = 0
    while i < n:
        j = i
        while j + 1 < n and values[j + 1][0] == values[i][0]:
            j += 1
        for k in range(i, j + 1):
            ranks[k] = (i + j) / 2 + 1
        t = j - i + 1
        ties += t ** 3 - t
        i = j + 1
    u = sum(r for r, (_, group) in zip(ranks, values, strict=True) if group == 0) - n1 * (n1 + 1) / 2
    sigma = math.sqrt(n1 * n2 / 12 * ((n + 1) - ties / (n * (n - 1))))
    if sigma == 0:
        return 1.0
    return math.erfc(abs(u - n1 * n2 / 2) / sigma / math.sqrt(2))


def test_the_timing_test_can_tell_a_difference() -> None:
    fast = [0.002 + 0.0001 * i for i in range(20)]
    slow = [0.2 + 0.01 * i for i in range(20)]
    assert mann_whitney_p(fast, slow) < 1e-6
    assert mann_whitney_p(slow, list(reversed(slow))) > 0.9


async def test_known_and_unknown_names_cannot_be_told_apart(server: LiveServer) -> None:
    """Same statuses and pages, and timing distributions a Mann-Whitney test cannot separate.

    Before: once unknown names had spent their shared budget, a real name answered 403 after
    ~370 ms and a missing one 429 after ~2 ms.
    """
    rows: dict[str, list[tuple[int, float, str]]] = {"known": [], "unknown": []}
    async with Browser(server) as browser:
        for rounds in range(ATTEMPTS + 2):
            for i, known in enumerate(KNOWN):
                pair = [("known", known), ("unknown", f"ghost{i}")]
                for kind, name in pair if (rounds + i) % 2 else reversed(pair):  # neither always first
                    rows[kind].append(await browser.login(name, WRONG))
    statuses = {kind: [s for s, _, _ in r] for kind, r in rows.items()}
    assert statuses["known"] == statuses["unknown"]
    assert sorted(statuses["known"]) == [403] * ATTEMPTS * len(KNOWN) + [429] * 2 * len(KNOWN)
    assert [p for _, _, p in rows["known"]] == [p for _, _, p in rows["unknown"]]
    for status in (403, 429):
        real = [t for s, t, _ in rows["known"] if s == status]
        ghost = [t for s, t, _ in rows["unknown"] if s == status]
        p = mann_whitney_p(real, ghost)
        medians = f"known {statistics.median(real) * 1000:.1f} ms, unknown {statistics.median(ghost) * 1000:.1f} ms"
        assert p > 0.001, f"{status}: the answer times differ (p={p:.2g}; {medians})"


def cli(server: LiveServer, *args: str) -> None:
    result = subprocess.run([*onionchat_command(), "staff", *args, "--config", str(server.config_path)],
                            input=f"{PASSWORD} changed\n".encode(), capture_output=True, timeout=60, check=False,
                            env=child_env(Path(server.data_dir).parent), cwd=server.data_dir)
    assert result.returncode == 0, result.stderr.decode()


async def test_command_line_changes_sign_out_the_running_servers_sessions(server: LiveServer) -> None:
    made = {}
    for name in [*CLI_CHANGED, "untouched"]:
        browser = await Browser(server).__aenter__()
        status, _, _ = await browser.login(name, PASSWORD)
        assert status == 303
        made[name] = browser
    for args in CLI_CHANGED.values():
        cli(server, *args)

    async def signed_out() -> list[str]:
        return [n for n in CLI_CHANGED if await made[n].get("account") == 303]

    deadline = time.monotonic() + 25  # the server re-reads accounts.json every ten seconds
    gone: list[str] = []
    while time.monotonic() < deadline and len(gone) < len(CLI_CHANGED):
        gone = await signed_out()
        await asyncio.sleep(0.5)
    try:
        assert sorted(gone) == sorted(CLI_CHANGED)
        assert await made["untouched"].get("account") == 200
    finally:
        await closed(list(made.values()))

