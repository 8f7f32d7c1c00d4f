"""The in-memory chat domain on its own: queue, accept, limits, ending, resume, sweeping."""

from __future__ import annotations

import asyncio
import collections
import math

import pytest

from onionchat.chat import (
    PASSPHRASE_DIGITS,
    Author,
    ChatStore,
    Clock,
    EndReason,
    State,
    clean_text,
    make_passphrase,
    normalise_passphrase,
)
from onionchat.config import LimitsConfig
from onionchat.errors import ChatError, LimitReached, NotFound
from onionchat.throttle import Throttle


class FakeClock(Clock):
    """A clock the test moves by hand: exact arithmetic, no waiting."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def wall(self) -> float:
        return 1_800_000_000.0 + self.now


def store(clock: Clock | None = None, **limits: int) -> ChatStore:
    return ChatStore(LimitsConfig(**limits), clock or Clock())


def test_queue_is_served_longest_waiting_first() -> None:
    chat = store()
    first, _ = chat.start("a")
    second, _ = chat.start("b")
    assert [c.id for c in chat.queue()] == [first.id, second.id]
    assert (chat.position(first), chat.position(second)) == (1, 2)
    chat.accept(first.id, "carla", max_chats=3)
    assert chat.position(second) == 1
    assert chat.position(first) == 0


def test_accept_twice_and_chat_limit_are_refused() -> None:
    chat = store()
    a, _ = chat.start("")
    b, _ = chat.start("")
    chat.accept(a.id, "carla", max_chats=1)
    with pytest.raises(ChatError) as taken:
        chat.accept(a.id, "dirk", max_chats=1)
    assert taken.value.code == "taken"
    with pytest.raises(LimitReached) as limit:
        chat.accept(b.id, "carla", max_chats=1)
    assert limit.value.code == "max_chats"
    assert b.state is State.WAITING


def test_accepting_tells_the_visitor_a_counsellor_joined() -> None:
    chat = store()
    conv, _ = chat.start("")
    chat.accept(conv.id, "carla", max_chats=3)
    assert conv.messages[-1].author is Author.SYSTEM
    assert conv.messages[-1].event == "joined"


def test_message_limits() -> None:
    chat = store(message_length=10, messages_per_conversation=3, messages_per_minute=100)
    conv, _ = chat.start("")
    with pytest.raises(LimitReached) as too_long:
        chat.post(conv.id, Author.VISITOR, "x" * 11)
    assert too_long.value.code == "too_long"
    with pytest.raises(ChatError) as empty:
        chat.post(conv.id, Author.VISITOR, " \n\t ")
    assert empty.value.code == "empty"
    for i in range(3):
        chat.post(conv.id, Author.VISITOR, f"m{i}")
    with pytest.raises(LimitReached) as full:
        chat.post(conv.id, Author.VISITOR, "one more")
    assert full.value.code == "conversation_full"
    assert [m.text for m in conv.messages] == ["m0", "m1", "m2"]


def test_a_visitor_flooding_messages_is_slowed_down() -> None:
    chat = store(messages_per_minute=3)
    conv, _ = chat.start("")
    for i in range(3):
        chat.post(conv.id, Author.VISITOR, str(i))
    with pytest.raises(LimitReached) as fast:
        chat.post(conv.id, Author.VISITOR, "flood")
    assert fast.value.code == "too_fast"
    chat.post(conv.id, Author.STAFF, "counsellors are not throttled", sender="carla")


def test_queue_and_conversation_capacity() -> None:
    chat = store(queue_length=2, conversations=3)
    a, _ = chat.start("")
    chat.start("")
    with pytest.raises(LimitReached) as queue:
        chat.start("")
    assert queue.value.code == "queue_full"
    chat.accept(a.id, "carla", 3)
    chat.start("")
    with pytest.raises(LimitReached) as busy:
        chat.start("")
    assert busy.value.code == "busy"


def test_ending_wipes_the_text_at_once() -> None:
    chat = store()
    conv, passphrase = chat.start("Mia")
    chat.post(conv.id, Author.VISITOR, "secret words")
    chat.end(conv.id, EndReason.STAFF_ENDED)
    assert conv.state is State.ENDED
    assert conv.messages == [] and conv.nickname == ""
    with pytest.raises(NotFound):
        chat.resume(passphrase, Throttle(5, 600))
    with pytest.raises(ChatError):
        chat.post(conv.id, Author.VISITOR, "after the end")


def test_resume_accepts_what_a_person_types() -> None:
    chat = store()
    conv, passphrase = chat.start("")
    for form in range(7):
        digits = passphrase.replace(" ", "")
        typed = [f"  {passphrase} ", digits, "-".join(passphrase.split()), ".".join(passphrase.split()),
                 digits.translate(str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")),  # Arabic-Indic
                 digits.translate(str.maketrans("0123456789", "۰۱۲۳۴۵۶۷۸۹")),  # Eastern Arabic-Indic
                 digits.replace("0", "O").replace("1", "l")][form]
        resumed, fresh = chat.resume(typed, Throttle(5, 600))
        assert resumed is conv and fresh != passphrase, typed
        with pytest.raises(NotFound):
            chat.resume(passphrase, Throttle(5, 600))  # spent: each resume gives a new one
        passphrase = fresh


def test_passphrase_normalisation_keeps_only_the_digits() -> None:
    assert normalise_passphrase("1234 5678-9012.3456\u00a07890") == "12345678901234567890"
    assert normalise_passphrase("٠١٢٣ ۴۵۶۷ ８９") == "0123456789"  # Arabic-Indic, Eastern, full-width
    assert normalise_passphrase("O1 lI") == "0111"
    assert normalise_passphrase("") == normalise_passphrase("just text") == ""


def test_wrong_passphrases_are_throttled_per_session() -> None:
    chat = store()
    _, passphrase = chat.start("")
    throttle = Throttle(3, 600)
    for _ in range(3):
        with pytest.raises(NotFound):
            chat.resume("wrong-words-here-now", throttle)
    with pytest.raises(LimitReached) as throttled:
        chat.resume(passphrase, throttle)  # even the right one, once the budget is spent
    assert throttled.value.code == "resume_throttled"


def test_passphrases_are_twenty_digits_in_groups_of_four() -> None:
    assert PASSPHRASE_DIGITS * math.log2(10) >= 64  # resume is open to anyone: no fewer bits
    groups = make_passphrase().split(" ")
    assert len(groups) == PASSPHRASE_DIGITS // 4 and all(len(g) == 4 and g.isdigit() and g.isascii() for g in groups)
    assert len({make_passphrase() for _ in range(200)}) == 200
    # Every digit comes up: nothing about the alphabet is skewed (2,000 digits; each ~200 times).
    counts = collections.Counter("".join(make_passphrase().replace(" ", "") for _ in range(100)))
    assert set(counts) == set("0123456789") and min(counts.values()) > 120


def test_sweep_ends_idle_chats_then_drops_them() -> None:
    clock = FakeClock()
    chat = store(clock, idle_minutes=1, ended_minutes=1)
    conv, _ = chat.start("")
    chat.post(conv.id, Author.VISITOR, "hello")
    clock.now += 30
    chat.sweep()
    assert conv.state is State.WAITING
    clock.now += 31
    chat.sweep()
    assert conv.state is State.ENDED  # type: ignore[comparison-overlap]  # sweep() changed it
    assert conv.end_reason is EndReason.EXPIRED and conv.messages == []
    assert chat.find(conv.id) is conv
    clock.now += 59
    chat.sweep()
    assert chat.find(conv.id) is conv, "an ended chat's last page stays readable for ended_minutes"
    clock.now += 1
    chat.sweep()
    assert chat.find(conv.id) is None


def test_clean_text_keeps_words_and_drops_control_characters() -> None:
    assert clean_text("a\x00b\x1bc\r\nd\u200de") == "abc\nd\u200de"
    assert clean_text("two\nlines\tx", single_line=True) == "two lines x"


async def test_waiters_wake_on_change_and_time_out_without_one() -> None:
    chat = store()
    conv, _ = chat.start("")
    assert await conv.wait_newer(conv.version, 0.01) is False
    waiting = asyncio.create_task(conv.wait_newer(conv.version, 5))
    await asyncio.sleep(0)
    chat.post(conv.id, Author.VISITOR, "wake up")
    assert await asyncio.wait_for(waiting, 1) is True


async def test_board_waiters_wake_when_someone_joins_the_queue() -> None:
    chat = store()
    waiter = chat.board_waiter()

    async def wait() -> bool:
        return await waiter(5)

    waiting = asyncio.create_task(wait())
    await asyncio.sleep(0)
    chat.start("")
    assert await asyncio.wait_for(waiting, 1) is True


def test_shutdown_ends_every_chat() -> None:
    chat = store()
    a, _ = chat.start("")
    b, _ = chat.start("")
    chat.accept(a.id, "carla", 3)
    chat.shutdown()
    assert a.end_reason is EndReason.SHUTDOWN and b.end_reason is EndReason.SHUTDOWN


def test_the_visitors_danger_press_is_a_line_in_the_conversation_once() -> None:
    chat = store()
    conv, _ = chat.start("")
    chat.mark_urgent(conv.id, actor="carla")  # staff marking it: the audit has it, no line
    assert conv.urgent and conv.messages == []
    version = conv.visitor_version
    for _ in range(3):
        chat.mark_urgent(conv.id)  # the visitor's own press, even after staff marked it
    assert [(m.author, m.event) for m in conv.messages] == [(Author.SYSTEM, "urgent")]
    assert conv.visitor_version == version + 1  # the visitor's frame shows the line too
    chat.end(conv.id, EndReason.VISITOR_LEFT)
    chat.mark_urgent(conv.id)
    assert conv.messages == []


def test_each_held_chat_has_its_own_pane_and_a_just_ended_pane_comes_last() -> None:
    chat = store()
    convs = [chat.start(str(n))[0] for n in range(4)]
    assert [chat.accept(c.id, "carla", max_chats=3).slot for c in convs[:3]] == [1, 2, 3]
    chat.end(convs[0].id, EndReason.VISITOR_LEFT)
    chat.end(convs[1].id, EndReason.VISITOR_LEFT)
    chat.requeue(convs[2].id, "carla")
    assert convs[2].slot == 0
    # Pane 3 is free and shows nothing; panes 1 and 2 may still show an ended chat and its wrap-up.
    assert chat.free_slot("carla", 3) == 3
    assert chat.free_slot("carla", 3, preferred=2) == 2  # the pane the counsellor aimed at, when free
    assert chat.accept(convs[3].id, "carla", max_chats=3, slot=1).slot == 1
    assert chat.free_slot("carla", 3, preferred=1) == 3
    assert chat.free_slot("dirk", 3) == 1


def test_a_reply_is_due_while_the_visitor_wrote_last() -> None:
    chat = store()
    conv, _ = chat.start("a")
    assert not conv.awaiting_reply
    chat.post(conv.id, Author.VISITOR, "hello?")
    assert conv.awaiting_reply
    chat.accept(conv.id, "carla", max_chats=3)  # the 'joined' line is not an answer
    assert conv.awaiting_reply
    chat.post(conv.id, Author.STAFF, "I am here", sender="carla")
    assert not conv.awaiting_reply


def test_a_transfer_is_highlighted_until_the_new_counsellor_opens_it() -> None:
    chat = store()
    conv, _ = chat.start("a")
    chat.accept(conv.id, "carla", max_chats=3)
    other, _ = chat.start("b")
    chat.accept(other.id, "dirk", max_chats=3)
    chat.transfer(conv.id, "carla", "dirk", "", max_chats=3)
    assert conv.handed_over and conv.slot == 2
    version = chat.board_version
    chat.opened(conv, "carla")  # not hers any more: nothing changes
    assert conv.handed_over
    chat.opened(conv, "dirk")
    assert not conv.handed_over and chat.board_version > version
