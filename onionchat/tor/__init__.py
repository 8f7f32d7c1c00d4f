"""Publishing on Tor: control-port helpers, ways to reach tor, onion keys, and their CLI verbs.

Importing this package imports nothing of stem: ``serve --local`` never pays for it.
"""
