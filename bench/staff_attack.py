"""Staff login under attack: throttle races, starved hashing, lock-out, name enumeration, stale sessions.

Run: .venv/bin/python -m bench.staff_attack [--samples 40] [--source DIR]
Starts ``onionchat serve --local`` with production argon2id parameters and prints, one line each:

- concurrent wrong passwords for one account: how many were checked by argon2 (403) and how
  many refused before it (429);
- a burst of wrong passwords with the right one last: was it let in;
- a real login for another account while the hasher's queue is full of fake ones: its latency;
- a lock-out attempt: wrong passwords for a name, then the right one (one listener, so one
  circuit in --local mode);
- known versus unknown names: status and time after other unknown names spent their budget;
  and the distribution of answer times (median and spread) and pages while nothing is throttled;
- a session signed in elsewhere after a password change on the web and with ``staff passwd``.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import subprocess
import sys
import time

import aiohttp

from bench.proc import PASSWORD, VENV_BIN, Server, make_accounts, running, workdir

CSRF_RE = re.compile(r'name="_csrf" value="([^"]+)"')
WRONG = "a wrong but long password"


class Browser:
    """One staff browser: its own cookies and the login page's CSRF token."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        self.csrf = ""

    async def open(self, path: str = "login") -> tuple[int, str]:
        """GET a page; remember its CSRF token."""
        async with self.http.get(self.base + path, allow_redirects=False) as response:
            text = await response.text()
        match = CSRF_RE.search(text)
        if match:
            self.csrf = match.group(1)
        return response.status, text

    async def post(self, path: str, data: dict[str, str]) -> tuple[int, str, float]:
        """POST a form with the CSRF token: status, page and seconds."""
        began = time.perf_counter()
        async with self.http.post(self.base + path, data={"_csrf": self.csrf, **data},
                                  allow_redirects=False) as response:
            text = await response.text()
        return response.status, text, time.perf_counter() - began

    async def login(self, name: str, password: str) -> tuple[int, str, float]:
        """One login attempt."""
        return await self.post("login", {"username": name, "password": password})

    async def close(self) -> None:
        """Close the connections."""
        await self.http.close()


async def browsers(base: str, count: int) -> list[Browser]:
    """``count`` browsers with the login page open."""
    made = [Browser(base) for _ in range(count)]
    await asyncio.gather(*(b.open() for b in made))
    return made


async def close_all(made: list[Browser]) -> None:
    """Close every browser."""
    await asyncio.gather(*(b.close() for b in made))


def tally(statuses: list[int]) -> str:
    """'5 x 403, 35 x 429'."""
    return ", ".join(f"{statuses.count(s)} x {s}" for s in sorted(set(statuses)))


async def concurrent_wrong(base: str, name: str, count: int) -> str:
    """``count`` wrong passwords for ``name`` at once."""
    made = await browsers(base, count)
    results = await asyncio.gather(*(b.login(name, WRONG) for b in made))
    await close_all(made)
    statuses = [r[0] for r in results]
    return f"{count} concurrent wrong passwords for {name}: {tally(statuses)} (403 = checked by argon2)"


async def burst_then_right(base: str, name: str, count: int) -> str:
    """Wrong passwords at once, and the right one while they are being checked."""
    made = await browsers(base, count)
    tasks = [asyncio.create_task(b.login(name, WRONG)) for b in made[:-1]]
    await asyncio.sleep(0)
    last = await made[-1].login(name, PASSWORD)
    results = await asyncio.gather(*tasks)
    await close_all(made)
    verdict = "LET IN" if last[0] == 303 else f"refused ({last[0]})"
    return (f"burst of {count - 1} wrong + the right password last for {name}: the right one {verdict}; "
            f"wrong ones: {tally([r[0] for r in results])}")


async def starved(base: str, attacked: str, victim: str, count: int) -> str:
    """Fake logins for one account, then a real one for another: how long it waits."""
    fakes = await browsers(base, count)
    (real,) = await browsers(base, 1)
    tasks = [asyncio.create_task(b.login(attacked, WRONG)) for b in fakes]
    await asyncio.sleep(0.05)  # the fakes are queued first
    status, _, took = await real.login(victim, PASSWORD)
    results = await asyncio.gather(*tasks)
    await close_all([*fakes, real])
    return (f"{count} fake logins for {attacked}, then a real one for {victim}: {status} after {took:.2f} s "
            f"(fakes: {tally([r[0] for r in results])})")


async def lock_out(base: str, name: str, attempts: int) -> str:
    """Wrong passwords from one browser, then the right one from another."""
    (attacker,) = await browsers(base, 1)
    for _ in range(attempts):
        await attacker.login(name, WRONG)
    (victim,) = await browsers(base, 1)
    status, _, _ = await victim.login(name, PASSWORD)
    await close_all([attacker, victim])
    return (f"{attempts} wrong passwords for {name} from one browser, then the right one from another: "
            f"{status} ({'locked out' if status == 429 else 'let in' if status == 303 else 'other'}); "
            "--local has one circuit for everybody")


def summary(times: list[float]) -> str:
    """Median, 10th and 90th percentile in milliseconds."""
    ms = sorted(t * 1000 for t in times)
    q = statistics.quantiles(ms, n=10)
    return f"median {statistics.median(ms):.0f} ms, p10 {q[0]:.0f}, p90 {q[-1]:.0f}"


async def enumeration_probe(base: str, known: str) -> str:
    """The issue's probe: spend what unknown names spend, then ask for a real and a missing name."""
    (browser,) = await browsers(base, 1)
    for i in range(5):  # spend what other unknown names can spend
        await browser.login(f"nobody-{i}", WRONG)
    k_status, _, k_took = await browser.login(known, WRONG)
    u_status, _, u_took = await browser.login("nobody-else", WRONG)
    await browser.close()
    return (f"after 5 wrong logins for 5 other unknown names: known name -> {k_status} in {k_took * 1000:.0f} ms, "
            f"unknown name -> {u_status} in {u_took * 1000:.0f} ms")


async def enumeration(base: str, known: str, unknown: str, samples: int) -> list[str]:
    """Alternating wrong logins for a real and a missing name: statuses, timing, pages."""
    lines = []
    (browser,) = await browsers(base, 1)
    seen: dict[str, list[tuple[int, float, str]]] = {known: [], unknown: []}
    for _ in range(samples):
        for name in (known, unknown):
            status, text, took = await browser.login(name, WRONG)
            seen[name].append((status, took, CSRF_RE.sub("", text)))
    for name in (known, unknown):
        rows = seen[name]
        lines.append(f"  {'known' if name == known else 'unknown'} name: {tally([r[0] for r in rows])}; "
                     f"{summary([r[1] for r in rows])}")
    same_page = all(a[2] == b[2] for a, b in zip(seen[known], seen[unknown], strict=True))
    lines.append(f"  pages identical (CSRF token aside): {same_page}")
    await browser.close()
    return lines


async def session_after_password_change(server: Server, base: str, name: str) -> list[str]:
    """A second session of the account after a password change on the web and with the CLI."""
    lines = []
    thief, owner = await browsers(base, 2)
    for b in (thief, owner):
        status, _, _ = await b.login(name, PASSWORD)
        assert status == 303, f"login failed: {status}"
    await owner.open("account")
    new = PASSWORD + " new"
    status, _, _ = await owner.post("account/password", {"current_password": PASSWORD, "new_password": new,
                                                          "new_password_again": new})
    code, _ = await thief.open("")
    lines.append(f"other session after a password change on the web: GET / -> {code} "
                 f"({'still signed in' if code == 200 else 'signed out'})")
    (again,) = await browsers(base, 1)
    status, _, _ = await again.login(name, new)
    subprocess.run([str(VENV_BIN / "onionchat"), "staff", "passwd", name, "--password-stdin",  # noqa: S603
                    "--config", str(server.config)], input=f"{PASSWORD}\n".encode(), check=True,
                   capture_output=True)
    deadline = time.monotonic() + 20
    code = 200
    while time.monotonic() < deadline and code == 200:
        code, _ = await again.open("")
        await asyncio.sleep(0.5)
    lines.append(f"session after 'onionchat staff passwd': GET / -> {code} within 20 s "
                 f"({'still signed in' if code == 200 else 'signed out'})")
    await close_all([thief, owner, again])
    return lines


async def measure(server: Server, samples: int) -> None:
    """Everything but the timing distributions, at the default budgets."""
    base = f"http://127.0.0.1:{server.staff_port}/"
    print(await concurrent_wrong(base, "c01", 40))
    print(await burst_then_right(base, "c02", 30))
    print(await starved(base, "c03", "c04", 60))
    print(await lock_out(base, "c05", 5))
    print(await enumeration_probe(base, "c06"))
    for line in await session_after_password_change(server, base, "c07"):
        print(line)


async def timing(server: Server, samples: int) -> None:
    """The timing distributions, with a budget above the sample count."""
    base = f"http://127.0.0.1:{server.staff_port}/"
    print(f"known (c08) vs unknown (nobody-here) names, {samples} wrong passwords each, alternating, "
          "with a throttle budget above the sample count:")
    for line in await enumeration(base, "c08", "nobody-here", samples):
        print(line)


def main() -> int:
    """Run both servers and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=40, help="wrong passwords per name for the timing")
    args = parser.parse_args()
    with workdir() as work:
        accounts = make_accounts(work / "accounts", [f"c{i:02}" for i in range(1, 10)])
        # --local has one circuit for everybody: the per-circuit budget would cover the whole
        # run, so it is raised here; what is measured is the per-account budget.
        server = Server(work, "staff", {"staff": {"login_attempts_per_circuit": 10_000,
                                                  "login_attempts_per_account": 10_000}}, accounts)
        with running(server):
            asyncio.run(measure(server, args.samples))
        roomy = Server(work, "timing", {"staff": {"login_attempts": 1000, "login_attempts_per_circuit": 10_000,
                                                  "login_attempts_per_account": 10_000}}, accounts)
        with running(roomy):
            asyncio.run(timing(roomy, args.samples))
        for problem in [*server.problems(), *roomy.problems()]:
            print("problem:", problem)
    return 0


if __name__ == "__main__":
    sys.exit(main())
