"""Which Tor circuit a request came on, and charging its budgets.

The id is anonymous and lives in memory only: never logged, never stored, never shown.
Budgets that one person could spend for everyone are kept per circuit instead (see
docs/abuse.md). Without Tor circuit ids (``serve --local``) every request shares the one
circuit LOCAL, the listener's own.
"""

from __future__ import annotations

from aiohttp import web

from onionchat.circuits import LOCAL, Budget
from onionchat.errors import ErrorCode, LimitReached
from onionchat.web import keys
from onionchat.web.proxy import CircuitProtocol

__all__ = ["LOCAL", "charge", "circuit_of"]


def circuit_of(request: web.BaseRequest) -> str:
    """The circuit id of the connection ``request`` came on; LOCAL when there is none."""
    protocol = request.protocol
    return protocol.circuit if isinstance(protocol, CircuitProtocol) else LOCAL


def charge(request: web.BaseRequest, what: Budget) -> None:
    """Count ``what`` against the request's circuit on a site with budgets; refused when over budget."""
    circuits = request.app[keys.LISTENER].circuits if isinstance(request, web.Request) else None
    if circuits is not None and not circuits.charge(circuit_of(request), what):
        raise LimitReached(ErrorCode.CIRCUIT_BUDGET)
