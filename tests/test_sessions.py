"""The session table under a flood: bare sessions go first, from the circuit holding the most (item 5)."""

from __future__ import annotations

import pytest

from onionchat.circuits import LOCAL
from onionchat.errors import ErrorCode, LimitReached
from onionchat.sessions import SessionStore


def test_one_circuit_holds_at_most_its_share_giving_up_its_own_oldest_bare_session_first() -> None:
    sessions = SessionStore(100, 600, per_circuit=3)
    chatting = sessions.create("1")
    chatting.conversation = "c1"
    own = [sessions.create("1") for _ in range(2)]
    reader = sessions.create("2")  # a visitor reading the start page, on a circuit of their own
    for _ in range(50):
        sessions.create("1")
    assert sessions.get(chatting.id) is chatting, "a chat is never pushed out by its own circuit's page loads"
    assert all(sessions.get(s.id) is None for s in own)
    assert sessions.get(reader.id) is reader
    assert len(sessions) == 4


def test_a_full_table_evicts_a_bare_session_of_the_circuit_holding_the_most() -> None:
    sessions = SessionStore(10, 600, per_circuit=100)
    reader = sessions.create("2")
    flood = [sessions.create("666") for _ in range(9)]
    sessions.create("3")
    assert sessions.get(reader.id) is reader, "the visitor mid-way through starting keeps their session"
    assert sessions.get(flood[0].id) is None and len(sessions) == 10


def test_sessions_of_ended_chats_count_as_bare() -> None:
    live = {"c-live"}
    sessions = SessionStore(2, 600, live_chat=lambda session: session.conversation in live)
    ended, chatting = sessions.create(), sessions.create()
    ended.conversation, chatting.conversation = "c-ended", "c-live"
    newcomer = sessions.create()
    assert sessions.get(ended.id) is None and sessions.get(chatting.id) is chatting
    newcomer.conversation = "c-live"
    with pytest.raises(LimitReached) as busy:  # every session holds a live chat: refused, clearly
        sessions.create()
    assert busy.value.code is ErrorCode.BUSY


def test_the_bound_per_circuit_can_be_lifted_for_the_one_circuit_of_a_listener_without_ids() -> None:
    sessions = SessionStore(100, 600, per_circuit=2, bounded=lambda circuit: circuit != LOCAL)
    kept = [sessions.create(LOCAL) for _ in range(10)]
    assert all(sessions.get(s.id) is s for s in kept)


def test_regenerate_and_drop_keep_the_circuit_index_in_step() -> None:
    sessions = SessionStore(100, 600, per_circuit=2)
    a = sessions.create("1")
    old = a.id
    sessions.regenerate(a)
    assert sessions.get(old) is None and sessions.get(a.id) is a
    b = sessions.create("1")
    sessions.drop(b)
    c = sessions.create("1")
    assert sessions.get(a.id) is a and sessions.get(c.id) is c, "the dropped one no longer counts"


def test_sessions_left_behind_by_a_resume_count_as_bare() -> None:
    """Resuming one chat from many fresh sessions moves it each time: the old sessions hold nothing."""
    current = {"attached": 1}
    sessions = SessionStore(3, 600, live_chat=lambda s: s.conversation == "c1" and s.attached == current["attached"])
    for attached in (1, 2, 3):
        session = sessions.create()
        session.conversation, session.attached = "c1", attached
        current["attached"] = attached
    newest = session
    newcomer = sessions.create()  # the table is full, but only of sessions the chat has left
    assert sessions.get(newest.id) is newest and sessions.get(newcomer.id) is newcomer
