"""The security headers on every response of both sites: the policy, stated where it is set."""

from __future__ import annotations

from typing import Final

from aiohttp import web

# The content security policy allows no script source at all: pages work at Tor Browser's
# Safest level because they never had any. Frames are our own (the chat frame set), so
# 'self' rather than 'none' for frame-src and frame-ancestors; forms post only to us.
CSP: Final = ("default-src 'none'; style-src 'self'; img-src 'self' data:; frame-src 'self'; "
              "frame-ancestors 'self'; form-action 'self'; base-uri 'none'")
SECURITY_HEADERS: Final = {
    "Content-Security-Policy": CSP,
    "Referrer-Policy": "no-referrer",  # a visitor's onion path never leaks to the quick-exit site
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "SAMEORIGIN",  # for browsers that ignore frame-ancestors
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": ("camera=(), microphone=(), geolocation=(), payment=(), usb=(), "
                           "interest-cohort=(), fullscreen=(), display-capture=()"),
    "Server": "onionchat",  # no version: nothing to fingerprint
}
NO_STORE: Final = "no-store"  # dynamic pages never touch a cache (shared computer, seized disk)


async def add_headers(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: the security headers on every response, errors included."""
    response.headers.update(SECURITY_HEADERS)
    response.headers.setdefault("Cache-Control", NO_STORE)
