"""The security headers on every response of both sites: the policy, stated where it is set."""

from __future__ import annotations

from typing import Final

from aiohttp import hdrs, web
from multidict import CIMultiDict, istr

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
HTML: Final = "text/html; charset=utf-8"
# The whole header block of a self-updating frame's answer, built once: each poll copies it
# (one C-level copy) and adds its Refresh, instead of merging nine headers into every answer.
FRAME_HEADERS: Final = CIMultiDict({hdrs.CONTENT_TYPE: HTML, **SECURITY_HEADERS, hdrs.CACHE_CONTROL: NO_STORE})
_CSP: Final = istr("Content-Security-Policy")
REFRESH: Final = istr("Refresh")


def secure(response: web.StreamResponse) -> None:
    """Give ``response`` the security headers (and no-store unless it says otherwise).

    Called by the guard for every answer of both sites; a frame's answer, built on
    FRAME_HEADERS, has them already.
    """
    headers = response.headers
    if _CSP in headers:
        return
    headers.update(SECURITY_HEADERS)
    headers.setdefault(hdrs.CACHE_CONTROL, NO_STORE)
