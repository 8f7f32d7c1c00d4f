"""Anonymous statistics: counting chat events, wrap-ups, atomic storage, suppression, page and CSV."""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
import os
import random
import stat
import time
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

import onionchat.staff
from onionchat.accounts import Role
from onionchat.chat import ChatStore, EndReason
from onionchat.config import Config, HoursConfig, LimitsConfig, ServerConfig, StatsConfig, from_mapping
from onionchat.errors import ChatError, ConfigError, StorageError
from onionchat.staff.statistics import QUESTIONS, report
from onionchat.stats import HIDDEN, LENGTH_BANDS, WAIT_BUCKETS, Stats, bucket_at, month_of, suppress, table
from onionchat.web.app import Services
from tests.conftest import PASSWORD, NewStaff, NewVisitor, Site, make_services, private_client


def store_with(stats: Stats) -> ChatStore:
    """The real chat store, feeding ``stats``."""
    store = ChatStore(LimitsConfig())
    store.subscribe(stats.on_event)
    return store


def this_month() -> str:
    return month_of(time.time())


# -- counting ---------------------------------------------------------------------------------


def test_counts_from_chat_events(tmp_path: Path) -> None:
    stats = Stats(tmp_path)
    store = store_with(stats)
    answered, _ = store.start("a")
    left, _ = store.start("b")
    abandoned, _ = store.start("c")
    store.accept(answered.id, "carla", 3)
    store.accept(left.id, "dirk", 3)
    store.end(answered.id, EndReason.STAFF_ENDED, actor="carla")
    store.end(left.id, EndReason.VISITOR_LEFT)  # the visitor left: the wrap-up is still dirk's
    store.end(abandoned.id, EndReason.QUICK_EXIT)
    month = this_month()
    counts = stats.totals(month, month)
    assert counts["chats"] == {"offered": 3, "answered": 2, "abandoned": 1}
    assert sum(counts["wait"].values()) == 2
    assert counts["wait"] == {"under 30 s": 2}
    assert sum(counts["length"].values()) == 2
    assert sum(counts["hours"].values()) == 3
    tm = time.localtime()
    assert counts["hours"] == {f"{tm.tm_wday}-{tm.tm_hour}": 3}
    assert [cid for cid, _ in stats.pending_for("carla")] == [answered.id]
    assert [cid for cid, _ in stats.pending_for("dirk")] == [left.id]
    assert stats.pending_for("sam") == []


def test_requeue_transfer_block_and_shutdown(tmp_path: Path) -> None:
    stats = Stats(tmp_path)
    store = store_with(stats)
    moved, _ = store.start("")
    store.accept(moved.id, "carla", 3)
    store.requeue(moved.id, "carla")
    store.accept(moved.id, "dirk", 3)  # answered once, whoever takes it later
    store.transfer(moved.id, "dirk", "carla", "", 3)
    store.end(moved.id, EndReason.VISITOR_LEFT)
    blocked, _ = store.start("")
    store.accept(blocked.id, "dirk", 3)
    store.block(blocked.id, "dirk", 10)
    closing, _ = store.start("")
    store.accept(closing.id, "dirk", 3)
    store.shutdown()  # the process ends: nobody is left to file a wrap-up
    month = this_month()
    assert stats.totals(month, month)["chats"] == {"offered": 3, "answered": 3}
    assert [cid for cid, _ in stats.pending_for("carla")] == [moved.id]
    assert [cid for cid, _ in stats.pending_for("dirk")] == [blocked.id]


def test_wrapup_once_and_only_by_its_counsellor(tmp_path: Path) -> None:
    stats = Stats(tmp_path)
    store = store_with(stats)
    conv, _ = store.start("")
    store.accept(conv.id, "carla", 3)
    store.end(conv.id, EndReason.STAFF_ENDED, actor="carla")
    with pytest.raises(ChatError) as refused:
        stats.file_wrapup(conv.id, "dirk", {"contact": "test"})
    assert refused.value.code == "forbidden"
    stats.file_wrapup(conv.id, "carla", {"contact": "real", "age": "16-17"})
    with pytest.raises(ChatError) as again:
        stats.file_wrapup(conv.id, "carla", {"contact": "real"})
    assert again.value.code == "gone"
    month = this_month()
    counts = stats.totals(month, month)
    assert counts["wrapup"] == {"filed": 1}
    assert counts["contact"] == {"real": 1}
    assert counts["age"] == {"16-17": 1}


# -- storage ----------------------------------------------------------------------------------


async def test_counters_persisted_atomically_owner_only(tmp_path: Path) -> None:
    stats = Stats(tmp_path)
    store = store_with(stats)
    conv, _ = store.start("Nickname-Marker")
    store.accept(conv.id, "carla", 3)
    store.end(conv.id, EndReason.STAFF_ENDED, actor="carla")
    await stats.flush()
    assert stat.S_IMODE(stats.path.stat().st_mode) == 0o600
    raw = json.loads(stats.path.read_text())
    assert raw["version"] == 1
    assert Stats(tmp_path).snapshot() == stats.snapshot()
    text = stats.path.read_text()
    # Counters only: no id, nickname, staff name or timestamp of a chat.
    for secret in (conv.id, "Nickname-Marker", "carla"):
        assert secret not in text
    for month, tables in raw["months"].items():
        assert len(month) == 7
        for counts in tables.values():
            assert all(isinstance(v, int) for v in counts.values())
    assert [p.name for p in tmp_path.iterdir()] == ["stats.json"]  # no temp file left behind


class Crash(BaseException):
    """The process dies: not an error anyone catches."""


async def test_crash_between_temp_write_and_rename_keeps_old_file(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    stats = Stats(tmp_path)
    store = store_with(stats)
    store.start("")
    await stats.flush()
    old = stats.path.read_bytes()
    store.start("")

    def crash(src: str, dst: str) -> None:
        assert Path(src).read_bytes() != old  # the new file was written in full first
        raise Crash

    monkeypatch.setattr(os, "replace", crash)  # the rename inside storage.write_atomic
    with pytest.raises(Crash):
        stats._write(stats.snapshot())
    monkeypatch.undo()
    assert stats.path.read_bytes() == old
    month = this_month()
    assert Stats(tmp_path).totals(month, month)["chats"] == {"offered": 1}


async def test_write_failure_is_retried(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stats = Stats(tmp_path)
    store_with(stats).start("")

    def fail(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", fail)
    await stats.flush()
    assert not stats.path.exists()
    monkeypatch.undo()
    await stats.flush()  # still dirty: written now
    assert json.loads(stats.path.read_text())["months"]


@pytest.mark.parametrize("content", [b"{not json", b'{"version": 1, "months": {"2026-13": {}}}',
                                     b'{"version": 1, "months": {"2026-01": {"chats": {"offered": -1}}}}',
                                     b"[]"])
def test_damaged_file_is_a_clear_error_not_a_reset(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "stats.json"
    path.write_bytes(content)
    with pytest.raises(StorageError, match=r"stats\.json"):
        Stats(tmp_path)
    assert path.read_bytes() == content


# -- suppression ------------------------------------------------------------------------------


def test_single_small_cell_gets_complementary_suppression() -> None:
    cells, total, hidden = suppress([3, 10, 20], 33, 5)
    assert cells == ["<5", HIDDEN, "20"]
    assert total == "33"
    assert hidden == {0, 1}


def test_two_small_cells_need_no_complement() -> None:
    assert suppress([1, 2, 20], 23, 5)[:2] == (["<5", "<5", "20"], "23")


def test_zero_is_small_too() -> None:
    # A zero shown as 0 would tell the reader that every '<5' is at least 1.
    assert suppress([3, 0, 10], 13, 5)[:2] == (["<5", "<5", "10"], "13")


def test_total_under_threshold() -> None:
    assert suppress([1, 2, 0], 3, 5)[:2] == (["<5", "<5", "<5"], "<5")


def test_empty_table_is_zeros_and_threshold_one_is_off() -> None:
    assert suppress([0, 0], 0, 5)[:2] == (["0", "0"], "0")
    assert suppress([1, 2, 0], 3, 1)[:2] == (["1", "2", "0"], "3")


def test_cells_a_reader_could_pin_are_hidden_further() -> None:
    # Two cells under 5 that add up to 8 can only be 4 and 4: a third is hidden.
    assert suppress([4, 4, 20], 28, 5)[:2] == (["<5", "<5", HIDDEN], "28")
    # Nothing left to hide: the total goes.
    assert suppress([4, 4], 8, 5)[:2] == (["<5", "<5"], HIDDEN)


def test_hidden_total_hides_a_cell_too() -> None:
    cells, total, _ = suppress([10, 20], 30, 5, hide_total=True)
    assert (cells, total) == ([HIDDEN, "20"], HIDDEN)


def reader_values(published: list[str], total: str, below: int, most: int) -> list[tuple[int, ...]]:
    """Every table a reader who knows the rules finds consistent with what is published."""
    options: list[range] = []
    for shown in published:
        if shown == f"<{below}":
            options.append(range(below))
        elif shown == HIDDEN:
            options.append(range(below, most + 1))
        else:
            options.append(range(int(shown), int(shown) + 1))
    found = []
    for values in itertools.product(*options):
        if total == f"<{below}":
            ok = 0 < sum(values) < below
        elif total == HIDDEN:
            ok = True
        else:
            ok = sum(values) == int(total)
        if ok:
            found.append(values)
    return found


@pytest.mark.parametrize(("cells", "below", "top"), [(2, 5, 14), (3, 5, 9), (3, 3, 7), (4, 3, 5)])
def test_no_small_cell_is_derivable(cells: int, below: int, top: int) -> None:
    """Exhaustively: no published table lets a reader pin a small non-zero cell to one value."""
    for counts in itertools.product(range(top + 1), repeat=cells):
        published, total, hidden = suppress(list(counts), sum(counts), below)
        if not hidden:
            continue
        possible = reader_values(published, total, below, sum(counts) + below)
        assert counts in possible
        for i in hidden:
            if 0 < counts[i] < below:
                assert len({v[i] for v in possible}) > 1, (counts, published, total)


def test_bars_only_scale_to_shown_figures() -> None:
    t = table("t", "T", [("a", 3), ("b", 10), ("c", 20), ("d", 0)], 5)
    assert [c.width for c in t.cells] == [0, 50, 100, 0]
    t = table("t", "T", [("a", 3), ("b", 10), ("c", 20)], 5)  # b hidden to protect a: no bar either
    assert [c.width for c in t.cells] == [0, 0, 100]
    t = table("t", "T", [("a", 7), ("b", 20)], 5)
    assert [c.width for c in t.cells] == [35, 100]


def test_median_and_percentile_are_buckets() -> None:
    counts = {"under 30 s": 4, "1-2 min": 4, "5-10 min": 2}
    assert bucket_at(counts, WAIT_BUCKETS, 0.4) == "under 30 s"
    assert bucket_at(counts, WAIT_BUCKETS, 0.5) == "1-2 min"
    assert bucket_at(counts, WAIT_BUCKETS, 0.9) == "5-10 min"
    assert bucket_at({}, WAIT_BUCKETS, 0.5) == ""


def test_linked_totals_stay_hidden(tmp_path: Path) -> None:
    """A cell hidden in one table is not revealed as another table's total."""
    stats = Stats(tmp_path)
    month = this_month()
    counts = stats._counts.setdefault(month, {})
    counts["chats"] = {"offered": 40, "answered": 37, "abandoned": 3}
    counts["wait"] = {"under 30 s": 30, "1-2 min": 7}
    result = report(stats, StatsConfig(), month, month)
    summary, wait = result.tables[0], result.tables[1]
    assert [c.shown for c in summary.cells] == [HIDDEN, "<5"]
    assert wait.total == HIDDEN
    assert any(c.hidden for c in wait.cells)


def test_config_validates_categories() -> None:
    config = from_mapping({"stats": {"age_bands": ["young", "old"], "suppress_below": 10}})
    assert config.stats.age_bands == ["young", "old"]
    assert StatsConfig().suppress_below == 5
    for bad in ({"age_bands": ["only"]}, {"referrals": ["a", "a"]}, {"durations": ["a", "b\n"]},
                {"suppress_below": 0}):
        with pytest.raises(ConfigError):
            from_mapping({"stats": bad})


# -- the web ----------------------------------------------------------------------------------


async def ended_chat(services: Services, new_visitor: NewVisitor, staff: Site) -> str:
    """A chat a visitor starts and ``staff`` accepts and ends; returns its id."""
    visitor = await new_visitor()
    response, _ = await visitor.post("/start", {"nickname": "v"})
    assert response.status == 303
    (conv,) = [c for c in services.chat if c.state.value == "waiting"]
    response, _ = await staff.post(f"/accept/{conv.id}")
    assert response.status == 303
    response, _ = await staff.post(f"/chat/{conv.id}/end")
    assert response.status == 303
    assert response.headers["Location"] == f"/wrapup/{conv.id}"
    return conv.id


async def test_wrapup_form_and_permissions(services: Services, new_staff: NewStaff,
                                           new_visitor: NewVisitor) -> None:
    carla = await new_staff("carla")
    dirk = await new_staff("dirk")
    cid = await ended_chat(services, new_visitor, carla)
    response, page = await carla.get(f"/wrapup/{cid}")
    assert response.status == 200
    assert "<textarea" not in page and 'type="text"' not in page  # fixed answers only
    assert 'name="_csrf"' in page
    for value in ("abusive", "under 12", "criminal (e.g. forced drug running)", "more than one", "legal aid"):
        assert f'value="{value}"' in page
    # Every control is labelled.
    ids = [part.split('"')[0] for part in page.split(' id="')[1:]]
    for control in (i for i in ids if i.startswith(("contact-", "age-", "referral-"))):
        assert f'for="{control}"' in page
    response, _ = await dirk.get(f"/wrapup/{cid}")
    assert response.status == 403
    response, _ = await dirk.post(f"/wrapup/{cid}", {"contact": "test"})
    assert response.status == 403
    response, _ = await carla.post(f"/wrapup/{cid}", {"contact": "test"}, csrf="wrong")
    assert response.status == 403
    response, page = await carla.post(f"/wrapup/{cid}", {"contact": "real", "age": "12-15"})
    assert response.status == 400  # a real contact answers every question
    assert 'value="12-15" checked' in page
    response, _ = await carla.post(f"/wrapup/{cid}", {"contact": "real", "age": "made up"})
    assert response.status == 400
    answers = {"contact": "real", "age": "12-15", "exploitation": "labour", "duration": "over a year",
               "perpetrators": "one", "referral": "shelter"}
    response, _ = await carla.post(f"/wrapup/{cid}", answers)
    assert response.status == 303 and response.headers["Location"] == "/"
    response, _ = await carla.post(f"/wrapup/{cid}", answers)
    assert response.status == 404  # only once
    month = this_month()
    counts = services.stats.totals(month, month)
    assert counts["contact"] == {"real": 1} and counts["referral"] == {"shelter": 1}
    assert counts["wrapup"] == {"filed": 1}


async def test_wrapup_skip_and_non_real_contacts(services: Services, new_staff: NewStaff,
                                                 new_visitor: NewVisitor) -> None:
    carla = await new_staff("carla")
    first = await ended_chat(services, new_visitor, carla)
    second = await ended_chat(services, new_visitor, carla)
    response, page = await carla.get("/wrapup")
    assert f'href="/wrapup/{first}"' in page and f'href="/wrapup/{second}"' in page
    await carla.get(f"/wrapup/{first}")
    response, _ = await carla.post(f"/wrapup/{first}", {"action": "skip"})
    assert response.status == 303
    # A test contact is counted as such; the other questions are not, whatever is sent.
    response, _ = await carla.post(f"/wrapup/{second}", {"contact": "test", "age": "under 12"})
    assert response.status == 303
    month = this_month()
    counts = services.stats.totals(month, month)
    assert counts["wrapup"] == {"skipped": 1, "filed": 1}
    assert counts["contact"] == {"test": 1}
    assert "age" not in counts


async def test_visitor_site_has_no_wrapup_or_stats(new_visitor: NewVisitor) -> None:
    visitor = await new_visitor()
    for path in ("/wrapup", "/wrapup/abc", "/stats", "/stats.csv"):
        response, _ = await visitor.get(path)
        assert response.status == 404
    response, _ = await visitor.post("/wrapup/abc", {"contact": "real"})
    assert response.status in (403, 404, 405)


async def test_stats_roles(services: Services, new_staff: NewStaff) -> None:
    services.accounts.add("ada", PASSWORD, Role.ADMIN)
    carla = await new_staff("carla")
    for path in ("/stats", "/stats.csv"):
        response, _ = await carla.get(path)
        assert response.status == 403
    for name in ("sam", "ada"):
        site = await new_staff(name)
        response, page = await site.get("/stats")
        assert response.status == 200
        assert 'href="/stats"' in page
        response, _ = await site.get("/stats.csv")
        assert response.status == 200
    anonymous = Site(carla.client)
    await carla.post("/logout")
    response, _ = await anonymous.get("/stats")
    assert response.status == 303 and response.headers["Location"] == "/login"


async def test_range_is_validated(new_staff: NewStaff) -> None:
    sam = await new_staff("sam")
    for query in ("from=2026-13&to=2026-12", "from=26-01", "to=2026-1", "from=<script>"):
        response, _ = await sam.get(f"/stats?{query}")
        assert response.status == 400
        response, _ = await sam.get(f"/stats.csv?{query}")
        assert response.status == 400
    response, page = await sam.get("/stats?from=2026-05&to=2025-02")  # reversed: swapped
    assert response.status == 200
    assert "From 2025-02 to 2026-05." in page


class Tables(HTMLParser):
    """The statistics page's tables as {(caption, row label): shown figure}."""

    def __init__(self) -> None:
        super().__init__()
        self.figures: dict[tuple[str, str], str] = {}
        self._caption = ""
        self._in: str | None = None
        self._text = ""
        self._row: list[tuple[str, str]] = []
        self._columns: list[str] = []
        self._head = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("caption", "th", "td"):
            self._in, self._text = tag, ""
        elif tag == "thead":
            self._head, self._columns = True, []
        elif tag == "tr":
            self._row = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "caption":
            self._caption = self._text.strip()
        elif tag in ("th", "td"):
            if self._head:
                self._columns.append(self._text.strip())
            else:
                self._row.append((tag, self._text.strip()))
        elif tag == "thead":
            self._head = False
        elif tag == "tr" and self._row and not self._head:
            label = self._row[0][1]
            values = [text for kind, text in self._row[1:] if kind == "td"]
            if len(self._columns) > 3 and label != "Total":  # the week grid: day x hour
                for hour, value in zip(self._columns[1:], values, strict=True):
                    self.figures[(self._caption, f"{label} {hour}:00")] = value
            else:
                self.figures[(self._caption, label.lower() if label == "Total" else label)] = values[0]
        if tag in ("caption", "th", "td"):
            self._in = None

    def handle_data(self, data: str) -> None:
        if self._in:
            self._text += data


async def test_csv_equals_page(services: Services, new_staff: NewStaff, new_visitor: NewVisitor) -> None:
    carla = await new_staff("carla")
    for n in range(7):
        cid = await ended_chat(services, new_visitor, carla)
        answers = {"contact": "real", "age": "16-17" if n < 6 else "under 12", "exploitation": "sexual",
                   "duration": "unknown", "perpetrators": "one", "referral": "police"}
        await carla.get(f"/wrapup/{cid}")
        response, _ = await carla.post(f"/wrapup/{cid}", answers)
        assert response.status == 303
    month = this_month()
    sam = await new_staff("sam")
    response, page = await sam.get(f"/stats?from={month}&to={month}")
    assert response.status == 200
    parser = Tables()
    parser.feed(page)
    response, body = await sam.get(f"/stats.csv?from={month}&to={month}")
    assert response.status == 200
    assert response.headers["Content-Disposition"].startswith("attachment;")
    assert response.headers["Content-Security-Policy"].startswith("default-src 'none'")
    assert response.headers["Cache-Control"] == "no-store"
    rows = list(csv.DictReader(io.StringIO(body)))
    from_csv = {(r["table"], r["category"]): r["count"] for r in rows if "(band)" not in r["category"]}
    assert from_csv == parser.figures
    assert from_csv[("Chats offered", "total")] == "7"
    assert from_csv[("Age band", "16-17")] == "6"
    assert from_csv[("Age band", "under 12")] == "<5"
    assert from_csv[("Age band", "12-15")] == "<5"
    assert from_csv[("Kind of contact", "real")] == "7"
    # The page explains that medians come from bands, and draws bars without inline styles.
    assert "bands" in page and "style=" not in page and "<script" not in page and "<svg" not in page
    assert 'class="stat-bar bar-w100"' in page
    assert '<th scope="row">' in page and '<th scope="col">' in page


async def test_stats_written_by_the_running_app_in_batches(services: Services, new_staff: NewStaff,
                                                           new_visitor: NewVisitor) -> None:
    carla = await new_staff("carla")
    path = services.config.data_dir / "stats.json"
    batch = services.config.stats.suppress_below
    for _ in range(batch - 1):
        await ended_chat(services, new_visitor, carla)
    await services.stats.flush()
    assert not path.exists()  # fewer than a batch: held in memory only
    month = this_month()
    assert services.stats.totals(month, month)["chats"]["answered"] == batch - 1  # the page shows them
    await ended_chat(services, new_visitor, carla)
    await services.stats.flush()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert json.loads(path.read_text())["months"][month]["chats"]["answered"] == batch
    assert math.isfinite(path.stat().st_size)


async def test_whole_batches_flushed_when_the_staff_app_stops(services: Services) -> None:
    client = TestClient(TestServer(onionchat.staff.create_app(services)))
    await client.start_server()
    for _ in range(services.config.stats.suppress_below + 1):
        services.chat.start("")
    await client.close()  # cleanup_ctx: the keeper writes once more on the way out
    path = services.config.data_dir / "stats.json"
    chats = services.config.stats.suppress_below + 1
    assert json.loads(path.read_text())["months"][this_month()]["chats"] == {"offered": chats}


async def test_configured_answers_are_escaped(aiohttp_client: Any, tmp_path: Path) -> None:
    config = Config(server=ServerConfig(data_dir=str(tmp_path / "data")), hours=HoursConfig(open_without_staff=True))
    config = replace(config, stats=StatsConfig(contact_types=['<b id="x">real</b>', "test"]))
    services = make_services(config)
    site = Site(await private_client(aiohttp_client, onionchat.staff.create_app(services)))
    await site.get("/login")
    await site.post("/login", {"username": "carla", "password": PASSWORD})
    conv, _ = services.chat.start("")
    services.chat.accept(conv.id, "carla", 3)
    services.chat.end(conv.id, EndReason.STAFF_ENDED, actor="carla")
    _, page = await site.get(f"/wrapup/{conv.id}")
    assert '<b id="x">' not in page and "&lt;b id=&#34;x&#34;&gt;real&lt;/b&gt;" in page
    response, _ = await site.post(f"/wrapup/{conv.id}", {"contact": "test"})
    assert response.status == 303


def test_a_total_hidden_in_one_table_is_hidden_where_it_is_a_cell(tmp_path: Path) -> None:
    """Three perpetrator answers of 4 each can only be pinned from the 12 real contacts: both go."""
    stats = Stats(tmp_path)
    month = this_month()
    counts = stats._counts.setdefault(month, {})
    counts["wrapup"] = {"filed": 40, "skipped": 6}
    counts["contact"] = {"real": 12, "test": 10, "silent": 9, "abusive": 9}
    counts["perpetrators"] = {"one": 4, "more than one": 4, "unknown": 4}
    result = report(stats, StatsConfig(), month, month)
    tables = {t.key: t for t in result.tables}
    assert [c.shown for c in tables["perpetrators"].cells] == ["<5", "<5", "<5"]
    assert tables["perpetrators"].total == HIDDEN
    contact = tables["contact"]
    assert contact.cell("real").shown == HIDDEN
    assert sum(c.hidden for c in contact.cells) >= 2  # and 'real' is not the total minus the rest
    # Every question table's total is hidden as well, with a cell hidden so the sum does not tell.
    for key in ("age", "exploitation", "duration", "referral"):
        assert tables[key].total in ("0", HIDDEN)


def test_linked_figures_are_hidden_together_in_random_reports(tmp_path: Path) -> None:
    """Wherever a table's total is another table's figure, both are hidden or both shown."""
    rng = random.Random(4)
    settings = StatsConfig()
    stats = Stats(tmp_path)
    month = this_month()

    def pick(labels: list[str]) -> dict[str, int]:
        return {label: rng.choice([0, 0, 1, 3, 4, 4, 5, 6, 9, 20]) for label in labels}

    for _ in range(300):
        wait, length = pick([b for _, b in WAIT_BUCKETS]), pick([b for _, b in LENGTH_BANDS])
        answered = sum(wait.values())
        contact = pick(settings.contact_types)
        questions = {field: dict.fromkeys(getattr(settings, name), 0) for field, name, _ in QUESTIONS}
        for counts in questions.values():
            for _ in range(contact["real"]):
                counts[rng.choice(list(counts))] += 1
        hours = {f"{d}-{h}": rng.choice([0, 0, 0, 1, 4, 5]) for d in range(7) for h in range(24)}
        offered = sum(hours.values())
        stats._counts[month] = {
            "chats": {"offered": offered, "answered": answered, "abandoned": max(0, offered - answered)},
            "wait": wait, "length": length if sum(length.values()) <= answered else wait, "hours": hours,
            "wrapup": {"filed": sum(contact.values()), "skipped": rng.choice([0, 2, 7])},
            "contact": contact, **questions}
        tables = {t.key: t for t in report(stats, settings, month, month).tables}
        links = [("wait", tables["chats"].cell("answered")), ("length", tables["chats"].cell("answered")),
                 ("contact", tables["wrapup"].cell("filed")),
                 *((field, tables["contact"].cell("real")) for field, _, _ in QUESTIONS)]
        for child, figure in links:
            if tables[child].total_hidden:
                assert figure.hidden, (child, figure)
            if figure.hidden and tables[child].total not in ("0", "<5"):
                assert tables[child].total == HIDDEN
                assert any(c.hidden for c in tables[child].cells)
        if tables["hours"].total_hidden:
            assert tables["chats"].total_hidden
