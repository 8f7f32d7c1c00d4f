"""The one exception tree of onionchat, and the codes of the refusals a person can see."""

from __future__ import annotations

import enum


class ErrorCode(enum.StrEnum):
    """Why something was refused; each has its own friendly page (web/guard.ERRORS).

    An enum rather than strings: a mistyped code is a mypy error, not a generic page.
    """

    BAD_REQUEST = "bad_request"
    CSRF = "csrf"
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not_found"
    METHOD = "method"
    TOO_LARGE = "too_large"
    SERVER = "server"
    BUSY = "busy"
    QUEUE_FULL = "queue_full"
    GONE = "gone"
    RESUME_UNKNOWN = "resume_unknown"
    RESUME_THROTTLED = "resume_throttled"
    TOO_LONG = "too_long"
    TOO_FAST = "too_fast"
    CONVERSATION_FULL = "conversation_full"
    BLOCKED = "blocked"
    NOT_AVAILABLE = "not_available"
    EMPTY = "empty"
    ENDED = "ended"
    TAKEN = "taken"
    MAX_CHATS = "max_chats"
    COLLEAGUE_FULL = "colleague_full"
    LOGIN_THROTTLED = "login_throttled"
    LOGIN_FAILED = "login_failed"
    CIRCUIT_BUDGET = "circuit_budget"  # one visitor (one Tor circuit) did something too often
    URGENT_ALREADY = "urgent_already"
    TOO_SLOW = "too_slow"  # a request did not arrive within [limits] request_seconds


class OnionchatError(Exception):
    """Base of every error onionchat raises on purpose."""


class ConfigError(OnionchatError):
    """The configuration file or a value in it is unusable; the message names the setting."""


class StorageError(OnionchatError):
    """A stored file (accounts, keys, counts) could not be read or written."""


class AccountError(OnionchatError):
    """A staff account operation was refused (unknown name, weak password, ...)."""


class ChatError(OnionchatError):
    """A chat operation was refused; ``code`` selects the friendly page the person sees."""

    def __init__(self, code: ErrorCode, message: str = "") -> None:
        super().__init__(message or code.value)
        self.code = code


class LimitReached(ChatError):
    """A configured limit (queue, conversations, messages, rate) would be exceeded."""


class NotFound(ChatError):
    """The conversation is gone (ended, wiped, or never existed)."""


class TorError(OnionchatError):
    """Tor could not be reached, launched or told to publish."""


class TorMissing(TorError):
    """'launch' mode, but no tor program is installed."""


class TorPermissionDenied(TorError):
    """The control socket or cookie of a running tor may not be read by this user."""


class TorAuthError(TorError):
    """The running tor refused our control authentication."""


class TorBootstrapTimeout(TorError):
    """tor did not finish bootstrapping within tor.bootstrap_timeout."""


class TorPublishError(TorError):
    """tor refused to publish an onion service."""


class StaffKeyError(TorError):
    """A staff client-authorization key operation was refused (bad or unknown label, ...)."""
