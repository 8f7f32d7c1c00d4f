"""Per-circuit budgets (onionchat/circuits.py) and the PROXY line tor starts each connection with."""

from __future__ import annotations

import pytest

from onionchat.circuits import LOCAL, WINDOW, Budget, CircuitBudgets
from onionchat.config import CircuitsConfig
from onionchat.web.proxy import circuit_from_proxy_line


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def budgets(**settings: int) -> tuple[CircuitBudgets, Clock, list[str]]:
    clock = Clock()
    circuits = CircuitBudgets(CircuitsConfig(**settings), clock)
    closed: list[str] = []
    circuits.on_close(closed.append)
    return circuits, clock, closed


def test_each_circuit_has_its_own_session_budget_which_comes_back_after_the_window() -> None:
    circuits, clock, _ = budgets(sessions=3)
    assert [circuits.charge("7", Budget.SESSION) for _ in range(4)] == [True, True, True, False]
    assert circuits.charge("8", Budget.SESSION), "another circuit is not touched"
    clock.now += WINDOW
    assert circuits.charge("7", Budget.SESSION)


def test_chats_and_resumes_are_budgeted_per_circuit() -> None:
    circuits, _, _ = budgets(chats=2, resumes=3)
    assert [circuits.charge("1", Budget.CHAT) for _ in range(5)] == [True] * 4 + [False]  # twice circuits.chats
    assert circuits.chats_started("1") == 4 and circuits.chats_started("2") == 0
    assert [circuits.charge("1", Budget.RESUME) for _ in range(4)] == [True, True, True, False]


def test_requests_per_second_allow_a_burst_then_the_rate_a_new_circuit_a_small_one() -> None:
    circuits, clock, _ = budgets(requests_per_second=2, strikes=1000)
    assert sum(circuits.charge("1", Budget.REQUEST) for _ in range(100)) == 10  # a new circuit: five seconds' worth
    clock.now += 1.0
    assert sum(circuits.charge("1", Budget.REQUEST) for _ in range(100)) == 2
    clock.now += 60.0
    assert sum(circuits.charge("1", Budget.REQUEST) for _ in range(100)) == 20  # at most ten seconds' worth


def test_open_connections_are_counted_and_released_for_tor_circuits_only() -> None:
    circuits, _, _ = budgets(connections=2)
    assert circuits.charge("1", Budget.CONNECTION) and circuits.charge("1", Budget.CONNECTION)
    assert not circuits.charge("1", Budget.CONNECTION)
    circuits.released("1")
    assert circuits.charge("1", Budget.CONNECTION)
    # Without Tor, several testers' browsers (6 connections each) share LOCAL: not counted.
    assert all(circuits.charge(LOCAL, Budget.CONNECTION) for _ in range(50))


def test_a_circuit_that_keeps_going_is_closed_once_and_refused_for_the_penalty() -> None:
    circuits, clock, closed = budgets(sessions=1, strikes=5, penalty_minutes=10)
    results = [circuits.charge("9", Budget.SESSION) for _ in range(10)]
    assert results == [True] + [False] * 9
    assert closed == ["9"], "closed once, when the strikes ran out"
    assert circuits.closed("9") and not circuits.charge("9", Budget.REQUEST)
    assert not circuits.charge("9", Budget.CONNECTION), "its new connections are refused too"
    signs = circuits.signs()
    assert signs.closed == 1 and signs.refused == 6, "five strikes and the one that closed it"
    clock.now += 10 * 60 + 1
    assert not circuits.closed("9") and circuits.charge("9", Budget.REQUEST)


def test_local_is_budgeted_but_never_closed_and_can_be_exempted() -> None:
    circuits, _, closed = budgets(sessions=2, strikes=2)
    assert [circuits.charge(LOCAL, Budget.SESSION) for _ in range(6)] == [True, True, False, False, False, False]
    assert closed == [] and not circuits.closed(LOCAL)
    circuits.local_budgets = False  # behind Tor without circuit ids: LOCAL is everybody
    assert all(circuits.charge(LOCAL, Budget.SESSION) for _ in range(100))
    assert circuits.charge("5", Budget.SESSION) and circuits.charge("5", Budget.SESSION)
    assert not circuits.charge("5", Budget.SESSION), "real circuits keep their budgets"


def test_memory_has_a_ceiling_the_least_recently_seen_circuit_is_forgotten() -> None:
    circuits, clock, _ = budgets(tracked=100, sessions=1)
    circuits.charge("busy", Budget.CONNECTION)  # holds a connection: kept while others can go
    for n in range(500):
        clock.now += 0.001
        circuits.charge(str(n), Budget.SESSION)
    assert len(circuits) == 100
    assert not circuits.charge("499", Budget.SESSION), "recent circuits are remembered"
    assert circuits.charge("busy", Budget.CONNECTION), "a circuit with an open connection was not forgotten"
    assert circuits.charge("0", Budget.SESSION), "the oldest was forgotten (fresh budgets)"
    circuits.forget_all()
    assert len(circuits) == 0


def test_flood_signs_are_counts_without_ids() -> None:
    circuits, _, _ = budgets(chats=1)
    for circuit in ("1", "2", "3"):
        circuits.charge(circuit, Budget.CHAT)
    circuits.charge("1", Budget.CHAT)
    circuits.charge(LOCAL, Budget.CHAT)
    circuits.charge(LOCAL, Budget.CHAT)
    signs = circuits.signs()
    assert (signs.circuits, signs.repeat_circuits, signs.refused) == (4, 1, 0)
    assert all(isinstance(value, int) for value in (signs.circuits, signs.refused, signs.closed))


@pytest.mark.parametrize(("line", "circuit"), [
    (b"PROXY TCP6 fc00:dead:beef:4dad::0:19 ::1 25 80", "25"),  # as tor 0.4.9.11 writes it
    (b"PROXY TCP6 fc00:dead:beef:4dad::aabb:ccdd ::1 52445 80", str(0xAABBCCDD)),
    (b"PROXY TCP6 fc00:dead:beef:4dad::ffff:ffff ::1 65535 65535", str(0xFFFFFFFF)),
    (b"PROXY TCP6 fc00:dead:beef:4dad::1:0 ::1 0 80", "65536"),
])
def test_tors_proxy_line_names_the_circuit(line: bytes, circuit: str) -> None:
    assert circuit_from_proxy_line(line) == circuit


@pytest.mark.parametrize("line", [
    b"", b"PROXY", b"GET / HTTP/1.1", b"PROXY TCP4 127.0.0.1 127.0.0.1 5000 80",
    b"PROXY TCP6 fc00:dead:beef:4dae::0:19 ::1 25 80",  # not tor's prefix
    b"PROXY TCP6 2001:db8::1 ::1 25 80", b"PROXY TCP6 fc00:dead:beef:4dad::0:19 ::1 25",
    b"PROXY TCP6 fc00:dead:beef:4dad::0:19 ::1 25 80 extra", b"PROXY TCP6 fc00:dead:beef:4dad::0:19  ::1 25 80",
    b"PROXY TCP6 fc00:dead:beef:4dad::0:19 ::1 25 99999", b"PROXY TCP6 fc00:dead:beef:4dad::0:19 ::1 -1 80",
    b"PROXY TCP6 fc00:dead:beef:4dad::g:19 ::1 25 80", b"PROXY UNKNOWN", "PROXY TCP6 ü ::1 1 2".encode(),
    b"PROXY TCP6 fc00:dead:beef:4dad::0:19 nonsense 25 80",
])
def test_anything_else_names_no_circuit(line: bytes) -> None:
    assert circuit_from_proxy_line(line) is None
