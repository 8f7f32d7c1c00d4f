"""Which Tor circuit a request came on, and the visitor site's per-circuit request budget.

The id is anonymous and lives in memory only: never logged, never stored, never shown.
Budgets that one person could spend for everyone are kept per circuit instead (see
docs/abuse.md). Without Tor circuit ids (``serve --local``) every request shares the one
circuit LOCAL, the listener's own.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from onionchat.circuits import LOCAL, Budget
from onionchat.errors import ErrorCode, LimitReached
from onionchat.web import keys
from onionchat.web.proxy import CircuitProtocol

__all__ = ["LOCAL", "budget", "charge", "circuit_of"]


def circuit_of(request: web.BaseRequest) -> str:
    """The circuit id of the connection ``request`` came on; LOCAL when there is none."""
    protocol = request.protocol
    return protocol.circuit if isinstance(protocol, CircuitProtocol) else LOCAL


@web.middleware
async def budget(request: web.Request,
                 handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    """Refuse a circuit's requests beyond circuits.requests_per_second with the calm 'wait' page.

    Checked before anything else is done for the request (inside the guard, which shows the
    page): a flood of requests costs us the refusal only.
    """
    if not request.app[keys.CIRCUITS].charge(circuit_of(request), Budget.REQUEST):
        raise LimitReached(ErrorCode.CIRCUIT_BUDGET)
    return await handler(request)


def charge(request: web.BaseRequest, what: Budget) -> None:
    """Count ``what`` against the request's circuit on a site with budgets; refused when over budget."""
    circuits = request.app[keys.LISTENER].circuits if isinstance(request, web.Request) else None
    if circuits is not None and not circuits.charge(circuit_of(request), what):
        raise LimitReached(ErrorCode.CIRCUIT_BUDGET)
