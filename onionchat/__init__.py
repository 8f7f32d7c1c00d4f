"""onionchat: an anonymous helpline chat served as a Tor onion service, without JavaScript."""

__version__ = "0.1.0"
