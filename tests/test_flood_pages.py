"""The pages of the flood defences: the calm refusal, the supervisors' signs and their one action."""

from __future__ import annotations

import re
from dataclasses import replace

import onionchat.visitor
from onionchat.chat import EndReason, State
from onionchat.config import CircuitsConfig, Config
from onionchat.web.app import Services
from tests.conftest import AiohttpClient, NewStaff, NewVisitor, Site, make_services, private_client, start_chat


async def test_requests_beyond_a_circuits_rate_get_the_calm_page_in_the_visitors_language(
        config: Config, aiohttp_client: AiohttpClient) -> None:
    services = make_services(replace(config, circuits=CircuitsConfig(requests_per_second=1, strikes=1000)))
    now = [1000.0]
    services.circuits.clock = lambda: now[0]  # the budgets' time, moved by hand
    visitor = Site(await private_client(aiohttp_client, onionchat.visitor.create_app(services)))
    assert (await visitor.get("/lang/nl?next=/"))[0].status == 303  # without Tor: the one circuit "local"
    statuses = [(await visitor.get("/"))[0].status for _ in range(11)]  # a burst of ten seconds' worth
    assert statuses == [200] * 9 + [429] * 2
    response, page = await visitor.get("/")
    assert response.status == 429 and 'lang="nl"' in page and "Wacht een paar minuten" in page
    now[0] += 1.0
    assert (await visitor.get("/"))[0].status == 200, "a second later there is room again"


async def test_supervisors_see_the_signs_and_end_a_floods_waiting_chats_in_one_action(
        new_visitor: NewVisitor, new_staff: NewStaff, services: Services) -> None:
    real = await new_visitor()
    await start_chat(real, "real")
    await real.get("/chat/compose")
    await real.post("/chat/send", {"text": "please help"})
    for n in range(3):
        await start_chat(await new_visitor(), f"gone{n}")  # start, then never look again
    store = services.chat
    store.sweep(now=store.clock.monotonic() + store.left_after + 1)
    assert all(c.left for c in store.queue()), "nobody's page asked for a while"
    sam = await new_staff("sam")
    _, page = await sam.get("/supervise")
    assert "Signs of a flood" in page
    assert re.search(r"End the 3 waiting chats that look like a flood", page), page
    response, _ = await sam.post("/supervise/clear-flood")
    assert response.status == 303 and response.headers["Location"] == "/supervise?cleared=3"
    _, page = await sam.get("/supervise?cleared=3")
    assert "3 waiting chats were ended." in page
    ended = [c for c in store if c.state is State.ENDED]
    assert len(ended) == 3 and all(c.end_reason is EndReason.CLEARED for c in ended)
    assert [c.nickname for c in store.queue()] == ["real"], "a visitor who wrote stays in line"
    carla = await new_staff("carla")
    response, _ = await carla.post("/supervise/clear-flood")
    assert response.status == 403, "supervisors only"
    assert any(e.action == "flood_cleared" and e.detail == "3" for e in services.audit.entries())
