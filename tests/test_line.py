"""The waiting line stays honest under a flood, and memory has a ceiling (the chat domain on its own)."""

from __future__ import annotations

import pytest

from onionchat.chat import MB, Author, ChatStore, EndReason, EventKind, State
from onionchat.circuits import LOCAL, Budget, CircuitBudgets
from onionchat.config import CircuitsConfig, LimitsConfig
from onionchat.errors import ChatError, ErrorCode, LimitReached
from onionchat.pagecache import Audience, PageCache, PageKey
from onionchat.throttle import Throttle
from tests.test_chat import FakeClock

LEFT_AFTER = 70.0


def line(clock: FakeClock | None = None, *, circuits: CircuitsConfig | None = None,
         **limits: int) -> tuple[ChatStore, FakeClock]:
    clock = clock or FakeClock()
    budgets = CircuitBudgets(circuits or CircuitsConfig(), clock.monotonic)
    return ChatStore(LimitsConfig(**limits), clock, circuits=budgets, left_after=LEFT_AFTER), clock


def test_a_waiting_visitor_whose_page_stopped_asking_is_marked_left_and_holds_no_place() -> None:
    chat, clock = line(queue_length=2)
    gone, _ = chat.start("gone", circuit="1")
    here, _ = chat.start("here", circuit="2")
    board = chat.board_version
    clock.now += LEFT_AFTER - 1
    chat.visitor_here(here)  # her frame asks again
    clock.now += 2
    chat.sweep()
    assert gone.left and not here.left and chat.board_version > board, "staff boards are told"
    assert [c.nickname for c in chat.queue()] == ["here", "gone"], "those still here are served first"
    assert chat.waiting_count() == 1 and chat.live_count() == 1
    newcomer, _ = chat.start("new", circuit="3")  # the line of 2 has room: 'gone' holds no place
    assert chat.position(newcomer) == 2
    chat.visitor_here(gone)  # she comes back (a paused frame checks): her place again
    assert not gone.left and chat.position(gone) == 1


def test_a_start_whose_browser_never_asks_for_the_chat_is_no_visitor_after_30_s() -> None:
    chat, clock = line()
    bot, _ = chat.start("bot", circuit="1")
    slow, _ = chat.start("slow link", circuit="2")
    clock.now += 20
    chat.visitor_here(slow)  # the chat page arrives, slowly
    clock.now += 11
    chat.sweep()
    assert bot.left and not slow.left


def test_a_circuit_closed_for_going_on_takes_its_waiting_chats_out_of_the_line() -> None:
    chat, _ = line(circuits=CircuitsConfig(chats=5, sessions=1, strikes=3))
    flood = [chat.start("", circuit="666")[0] for _ in range(3)]
    chat.accept(flood[0].id, "carla", max_chats=3)
    real, _ = chat.start("real", circuit="1")
    assert chat.circuits is not None
    for _ in range(5):
        chat.circuits.charge("666", Budget.SESSION)  # refused again and again: closed
    assert all(c.end_reason is EndReason.CLEARED for c in flood[1:])
    assert flood[0].state is State.OPEN, "a chat a counsellor holds stays: they decide"
    assert real.state is State.WAITING


def test_ended_chats_do_not_count_toward_conversations() -> None:
    chat, _ = line(conversations=3, circuits=CircuitsConfig(chats=1000))
    for _ in range(50):  # start, then leave, again and again
        conv, _ = chat.start("", circuit="1")
        chat.end(conv.id, EndReason.VISITOR_LEFT)
    assert chat.live_count() == 0
    chat.start("real", circuit="2")


def test_one_circuit_holds_at_most_its_chats_and_starts_at_most_twice_as_many() -> None:
    chat, clock = line(circuits=CircuitsConfig(chats=2, strikes=1000))
    a, _ = chat.start("", circuit="1")
    chat.start("", circuit="1")
    with pytest.raises(LimitReached) as held:
        chat.start("", circuit="1")
    assert held.value.code is ErrorCode.CIRCUIT_BUDGET
    chat.end(a.id, EndReason.VISITOR_LEFT)
    b, _ = chat.start("", circuit="1")
    chat.end(b.id, EndReason.VISITOR_LEFT)
    c, _ = chat.start("", circuit="1")
    chat.end(c.id, EndReason.VISITOR_LEFT)
    with pytest.raises(LimitReached):  # four started in ten minutes: the budget is spent
        chat.start("", circuit="1")
    chat.start("", circuit="2")
    clock.now += 600
    chat.start("", circuit="1")


def test_a_full_line_is_shared_out_a_visitors_only_chat_is_never_pushed_out() -> None:
    chat, _ = line(queue_length=4, circuits=CircuitsConfig(chats=5))
    flood = [chat.start(f"flood{n}", circuit="666")[0] for n in range(3)]
    real, _ = chat.start("real", circuit="1")
    newcomer, _ = chat.start("newcomer", circuit="2")  # full: the flood's newest makes room
    assert flood[-1].state is State.ENDED and flood[-1].end_reason is EndReason.DISPLACED
    assert real.state is State.WAITING and newcomer.state is State.WAITING
    chat.start("third", circuit="3")
    assert flood[1].state is State.ENDED
    with pytest.raises(LimitReached) as full:  # now every circuit holds one: nobody is pushed out
        chat.start("fourth", circuit="4")
    assert full.value.code is ErrorCode.QUEUE_FULL
    assert [c.nickname for c in chat.queue()] == ["flood0", "real", "newcomer", "third"]


def test_in_danger_counts_after_a_message_and_once_per_circuit() -> None:
    chat, _ = line(circuits=CircuitsConfig(chats=5))
    events: list[EventKind] = []
    chat.subscribe(lambda e: events.append(e.kind))
    calm, _ = chat.start("calm", circuit="1")
    fake, _ = chat.start("fake", circuit="666")
    fake2, _ = chat.start("fake2", circuit="666")
    chat.mark_urgent(fake.id)  # nothing written yet: it waits for a message
    assert not fake.urgent and fake.urgent_asked and chat.queue()[0] is calm
    chat.post(fake.id, Author.VISITOR, "help")
    assert fake.urgent and chat.queue()[0] is fake and events.count(EventKind.URGENT) == 1
    chat.post(fake2.id, Author.VISITOR, "help")
    with pytest.raises(LimitReached) as again:
        chat.mark_urgent(fake2.id)
    assert again.value.code is ErrorCode.URGENT_ALREADY and not fake2.urgent
    scared, _ = chat.start("scared", circuit="2")
    chat.post(scared.id, Author.VISITOR, "he is here")
    chat.mark_urgent(scared.id)
    assert [c.nickname for c in chat.queue()][:2] == ["fake", "scared"] and events.count(EventKind.URGENT) == 2
    chat.mark_urgent(calm.id, actor="carla")  # staff can always flag a chat
    assert calm.urgent


def test_without_circuits_several_testers_can_each_be_urgent() -> None:
    chat, _ = line()
    convs = [chat.start(f"t{n}", circuit=LOCAL)[0] for n in range(3)]
    for conv in convs:
        chat.post(conv.id, Author.VISITOR, "help")
        chat.mark_urgent(conv.id)
    assert all(c.urgent for c in convs)


def test_supervisors_clear_the_waiting_chats_of_a_flood_in_one_action() -> None:
    chat, clock = line(circuits=CircuitsConfig(chats=5))
    flood = [chat.start("", circuit="666")[0] for _ in range(3)]
    silent_gone, _ = chat.start("", circuit="7")
    real, _ = chat.start("real", circuit="1")
    wrote_then_gone, _ = chat.start("wrote", circuit="2")
    chat.post(wrote_then_gone.id, Author.VISITOR, "are you there?")
    clock.now += LEFT_AFTER + 1
    for conv in (real, *flood):
        chat.visitor_here(conv)
    chat.sweep()
    signs = chat.line_signs()
    assert (signs.waiting, signs.left, signs.suspect) == (4, 2, 4)
    events: list[tuple[EventKind, str, int]] = []
    chat.subscribe(lambda e: events.append((e.kind, e.actor, e.count)))
    assert chat.clear_flood("sam") == 4
    assert all(c.end_reason is EndReason.CLEARED for c in (*flood, silent_gone))
    assert real.state is State.WAITING and wrote_then_gone.state is State.WAITING
    assert (EventKind.FLOOD_CLEARED, "sam", 4) in events
    assert [e for e in events if e[1] == "sam"] == [(EventKind.FLOOD_CLEARED, "sam", 4)], "one audit entry"


def test_resume_has_no_global_budget() -> None:
    chat, _ = line()
    conv, passphrase = chat.start("", circuit="1")
    for n in range(500):  # wrong guesses from many sessions (each with its own throttle)
        with pytest.raises(ChatError):
            chat.resume(f"{n:020d}", Throttle(5, 600.0))
    assert chat.resume(passphrase, Throttle(5, 600.0))[0] is conv


def test_new_chats_are_refused_above_memory_mb_and_chats_grow_only_within_their_share() -> None:
    # 1 MB: below what a config file may say (16), so that the test fills it in a moment.
    chat, _ = line(memory_mb=1, conversations=4, message_length=100_000, messages_per_minute=10_000,
                   messages_per_conversation=100_000)
    big, _ = chat.start("big", circuit="1")
    small, _ = chat.start("small", circuit="2")
    while not chat.memory_full():
        chat.post(big.id, Author.VISITOR, "x" * 100_000)
    with pytest.raises(LimitReached) as busy:
        chat.start("late", circuit="3")
    assert busy.value.code is ErrorCode.BUSY
    with pytest.raises(LimitReached) as full:  # beyond its share (1 MB / 4): stops growing
        chat.post(big.id, Author.VISITOR, "more")
    assert full.value.code is ErrorCode.CONVERSATION_FULL
    chat.post(small.id, Author.VISITOR, "an ordinary conversation goes on")
    chat.post(big.id, Author.STAFF, "staff can still answer")
    chat.end(big.id, EndReason.STAFF_ENDED)
    assert chat.memory_bytes() < MB // 4 and not chat.memory_full()
    chat.start("late", circuit="3")


def test_kept_pages_one_per_chat_and_viewer_none_when_paused_all_within_a_budget() -> None:
    cache = PageCache(max_bytes=80_000)
    pages: dict[PageKey, object] = {}
    renders: list[str] = []

    def render(size: int) -> object:
        def page(url: str) -> bytes:
            renders.append(url)
            return b"<p>" + b"x" * size + b"</p>" + url.encode()
        return page

    visitor = PageKey(Audience.VISITOR)
    for lang in ("en", "nl", "ar", "en"):  # another language replaces the kept page
        cache.serve(pages, visitor, "5", "/m?v=5&p=0", render(1000), variant=lang)  # type: ignore[arg-type]
    assert len(pages) == 1 and cache.bytes == pages[visitor].size  # type: ignore[attr-defined]
    cache.serve(pages, visitor, "5", "/m?v=5&p=1", render(1000), variant="en")  # type: ignore[arg-type]
    assert len(renders) == 4, "the other refresh variant is filled in, not rendered"
    cache.serve(pages, None, "5", "", render(1000))  # type: ignore[arg-type]
    assert len(pages) == 1, "a paused frame's page is not kept"
    cache.serve(pages, PageKey(Audience.STAFF, "sam"), "5", "/s?v=5&p=0", render(20_000))  # type: ignore[arg-type]
    assert PageKey(Audience.STAFF, "sam") not in pages, "larger than an eighth of the budget: not kept"
    other: dict[PageKey, object] = {}
    for n in range(40):
        cache.serve(other, PageKey(Audience.STAFF, f"s{n}"), "1", "/s?v=1&p=0", render(1000))  # type: ignore[arg-type]
    assert cache.bytes <= 80_000
    cache.clear(pages)  # type: ignore[arg-type]
    cache.clear(other)  # type: ignore[arg-type]
    assert cache.bytes == 0
