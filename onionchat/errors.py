"""The one exception tree of onionchat; each domain raises from its own branch."""


class OnionchatError(Exception):
    """Base of every error onionchat raises on purpose."""


class ConfigError(OnionchatError):
    """The configuration file or a value in it is unusable; the message names the setting."""


class StorageError(OnionchatError):
    """A stored file (accounts, keys, counts) could not be read or written."""


class AccountError(OnionchatError):
    """A staff account operation was refused (unknown name, weak password, ...)."""


class ChatError(OnionchatError):
    """A chat operation was refused; ``code`` selects the friendly page the visitor sees."""

    def __init__(self, code: str, message: str = "") -> None:
        super().__init__(message or code)
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
