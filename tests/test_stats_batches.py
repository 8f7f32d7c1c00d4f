"""stats.json at rest: counts reach the disk only in batches of at least ``suppress_below``.

A seized server, or two backups of it compared, must not show one person's answers: no table
of a month may change on disk by fewer than a batch (in 'chats', no kind of count).
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

from onionchat.chat import ChatStore, EndReason
from onionchat.config import LimitsConfig
from onionchat.stats import CHATS, Stats, month_of

BATCH = 5


class Clock:
    def __init__(self) -> None:
        self.now = time.mktime((2026, 3, 20, 12, 0, 0, 0, 0, -1))

    def __call__(self) -> float:
        return self.now


def on_disk(stats: Stats) -> dict[str, dict[str, dict[str, int]]]:
    if not stats.path.exists():
        return {}
    months: dict[str, dict[str, dict[str, int]]] = json.loads(stats.path.read_text())["months"]
    return months


def changes(before: dict[str, dict[str, dict[str, int]]],
            after: dict[str, dict[str, dict[str, int]]]) -> dict[tuple[str, ...], int]:
    """How much each batch unit grew: (month, table) or, in 'chats', (month, table, kind)."""
    grown: dict[tuple[str, ...], int] = {}
    for month, tables in after.items():
        for table, cells in tables.items():
            for key, count in cells.items():
                unit = (month, table, key) if table == CHATS else (month, table)
                grown[unit] = grown.get(unit, 0) + count - before.get(month, {}).get(table, {}).get(key, 0)
    return {unit: n for unit, n in grown.items() if n}


async def test_fewer_than_a_batch_stay_in_memory(tmp_path: Path) -> None:
    stats = Stats(tmp_path, batch=BATCH)
    store = ChatStore(LimitsConfig())
    store.subscribe(stats.on_event)
    for _ in range(BATCH - 1):
        conv, _ = store.start("")
        store.accept(conv.id, "carla", 10)
        store.end(conv.id, EndReason.STAFF_ENDED, actor="carla")
        stats.file_wrapup(conv.id, "carla", {"contact": "real", "age": "12-15", "referral": "police"})
        await stats.flush()
        assert not stats.path.exists()
    month = month_of(time.time())
    assert stats.totals(month, month)["age"] == {"12-15": BATCH - 1}  # the page shows them
    assert Stats(tmp_path, batch=BATCH).totals(month, month) == {}  # a restart loses them
    conv, _ = store.start("")
    store.accept(conv.id, "carla", 10)
    store.end(conv.id, EndReason.STAFF_ENDED, actor="carla")
    stats.file_wrapup(conv.id, "carla", {"contact": "real", "age": "16-17", "referral": "police"})
    await stats.flush()
    written = on_disk(stats)[month]
    assert written["age"] == {"12-15": BATCH - 1, "16-17": 1} and written["referral"] == {"police": BATCH}
    assert written[CHATS] == {"offered": BATCH, "answered": BATCH}
    assert stats.held() == 0


async def test_no_version_of_the_file_shows_less_than_a_batch(tmp_path: Path) -> None:
    """Chats and wrap-ups at random, the file read after every flush: every change is a whole batch."""
    clock = Clock()
    stats = Stats(tmp_path, clock, batch=BATCH)
    store = ChatStore(LimitsConfig(conversations=10_000, queue_length=10_000))
    store.subscribe(stats.on_event)
    rng = random.Random(11)
    ended: list[str] = []
    previous = on_disk(stats)
    for _ in range(600):
        step = rng.random()
        if step < 0.3:
            store.start("")
        elif step < 0.5 and store.queue():
            conv = rng.choice(store.queue())
            store.accept(conv.id, "carla", 10_000)
        elif step < 0.7 and store.live():
            conv = rng.choice(store.live())
            store.end(conv.id, rng.choice([EndReason.STAFF_ENDED, EndReason.VISITOR_LEFT, EndReason.QUICK_EXIT]),
                      actor="carla")
            ended.extend(c for c, _ in stats.pending_for("carla") if c not in ended)
        elif step < 0.85 and ended:
            cid = ended.pop(rng.randrange(len(ended)))
            answers = None if rng.random() < 0.2 else {
                "contact": rng.choice(["real", "test"]), "age": rng.choice(["under 12", "12-15", "unknown"]),
                "exploitation": rng.choice(["sexual", "labour"])}
            stats.file_wrapup(cid, "carla", answers)
        else:
            clock.now += rng.choice([600, 3600, 86400, 9 * 86400])  # months go by too
        await stats.flush()
        now = on_disk(stats)
        assert all(n >= BATCH for n in changes(previous, now).values()), changes(previous, now)
        previous = now
    assert len(previous) >= 2  # several months were written
    # Nothing was lost on the way, only held: memory and disk together hold every count.
    total = stats.snapshot()
    assert sum(sum(c.values()) for t in total.values() for c in t.values()) == \
        sum(sum(c.values()) for t in previous.values() for c in t.values()) + stats.held()


async def test_an_ended_months_rest_joins_the_current_month(tmp_path: Path) -> None:
    clock = Clock()
    stats = Stats(tmp_path, clock, batch=BATCH)
    store = ChatStore(LimitsConfig())
    store.subscribe(stats.on_event)
    for _ in range(BATCH - 2):
        store.start("")
    await stats.flush()
    march = month_of(clock.now)
    clock.now += 20 * 86400  # April
    april = month_of(clock.now)
    assert april != march
    for _ in range(2):
        store.start("")
    await stats.flush()
    assert on_disk(stats) == {april: {CHATS: {"offered": BATCH}, "hours": on_disk(stats)[april]["hours"]}}
    assert sum(on_disk(stats)[april]["hours"].values()) == BATCH
