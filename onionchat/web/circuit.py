"""Which Tor circuit a request came on: an anonymous id, in memory only, never logged or stored.

Budgets that one person could spend for everyone are kept per circuit instead (see DESIGN.md).
Until the onion services export circuit ids, every request shares one circuit: the listener's,
as in ``--local`` mode, where there is no Tor and so no circuit to tell apart.
"""

from __future__ import annotations

from typing import Final

from aiohttp import web

LOCAL: Final = "local"  # the one 'circuit' of a listener without Tor circuit ids


def circuit_of(request: web.Request) -> str:
    """The circuit id of the connection ``request`` came on; LOCAL when there is none."""
    del request  # not read yet: see the module docstring
    return LOCAL
