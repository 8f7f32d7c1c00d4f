"""TOTP two-factor login (RFC 6238 via pyotp), its QR code as a PNG, and the half-finished login steps."""

from __future__ import annotations

import base64
import enum
import hmac
import io
import time
from dataclasses import dataclass

import pyotp
import segno

ISSUER = "onionchat"  # neutral: an authenticator app on a counsellor's phone names no helpline
CODE_SECONDS = 300  # how long a correct password waits for its code
ENROL_SECONDS = 900  # scanning a QR code with a new app takes longer
PENDING_LIMIT = 1000  # half-finished logins kept at once (the staff session store's size)


def new_secret() -> str:
    """A fresh random base32 secret (160 bits)."""
    return pyotp.random_base32(32)


def grouped(secret: str) -> str:
    """The secret in groups of four, for typing it into an app by hand."""
    return " ".join(secret[i:i + 4] for i in range(0, len(secret), 4))


def provisioning_uri(secret: str, name: str) -> str:
    """The otpauth:// URI an authenticator app reads from the QR code."""
    return pyotp.TOTP(secret).provisioning_uri(name=name, issuer_name=ISSUER)


def qr_png_data_uri(uri: str) -> str:
    """``uri`` as a QR code in a PNG ``data:`` URI.

    PNG, not SVG: Tor Browser's Safest level blocks SVG images; the CSP allows data: images.
    """
    buffer = io.BytesIO()
    segno.make(uri, error="m").save(buffer, kind="png", scale=5, border=4)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def clean_code(code: str) -> str:
    """The digits of a typed code (apps show '123 456'); '' unless exactly six digits remain."""
    digits = "".join(code.split())
    return digits if len(digits) == 6 and digits.isascii() and digits.isdigit() else ""


def matching_step(secret: str, code: str, now: float | None = None) -> int | None:
    """The time-step whose code is ``code``, allowing one step of clock drift either way; else None.

    The caller must still refuse a step at or before the last one accepted (replay).
    """
    code = clean_code(code)
    if not code or not secret:
        return None
    totp = pyotp.TOTP(secret)
    step = int((time.time() if now is None else now) // totp.interval)
    found = None
    for candidate in (step - 1, step, step + 1):
        # Compare every candidate in constant time, so timing tells nothing about near misses.
        if hmac.compare_digest(totp.generate_otp(candidate), code) and found is None:
            found = candidate
    return found


class Stage(enum.Enum):
    """How far a half-finished login or enrolment has come."""

    CODE = "code"  # the password was right; the TOTP code is next
    ENROL = "enrol"  # the password was right; 2FA is required but not set up yet
    ACCOUNT = "account"  # a signed-in staff member is setting up 2FA on their account page


@dataclass(slots=True)
class Pending:
    """A login between the password and the second step, or an enrolment not yet confirmed.

    ``secret`` is the new secret while enrolling.
    """

    name: str
    stage: Stage
    until: float
    secret: str = ""
    generation: int = 0  # the account's then: a password change or reset in between voids the step


class PendingSteps:
    """Half-finished logins and enrolments by session id, in memory only and only briefly."""

    def __init__(self, limit: int = PENDING_LIMIT) -> None:
        self.limit = limit
        self._pending: dict[str, Pending] = {}

    def __len__(self) -> int:
        return len(self._pending)

    def put(self, session_id: str, name: str, stage: Stage, secret: str = "", generation: int = 0) -> Pending:
        """Remember a step for ``session_id``, replacing any earlier one."""
        now = time.monotonic()
        self._pending = {sid: p for sid, p in self._pending.items() if p.until > now}
        if len(self._pending) >= self.limit:
            # Oldest first out: a flood of password successes cannot grow memory without bound.
            del self._pending[min(self._pending, key=lambda sid: self._pending[sid].until)]
        seconds = CODE_SECONDS if stage is Stage.CODE else ENROL_SECONDS
        pending = Pending(name=name, stage=stage, until=now + seconds, secret=secret, generation=generation)
        self._pending[session_id] = pending
        return pending

    def get(self, session_id: str, stage: Stage) -> Pending | None:
        """The live step of ``session_id`` if it is at ``stage``."""
        pending = self._pending.get(session_id)
        if pending is None or pending.stage is not stage:
            return None
        if pending.until <= time.monotonic():
            del self._pending[session_id]
            return None
        return pending

    def drop(self, session_id: str) -> None:
        """Forget the step of ``session_id``."""
        self._pending.pop(session_id, None)
