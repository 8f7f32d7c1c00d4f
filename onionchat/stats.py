"""Anonymous aggregate counts per month and category, with small-cell suppression."""

from __future__ import annotations

from pathlib import Path

from onionchat.chat import ChatEvent

STATS_FILE = "stats.json"


class Stats:
    """Counters only: no per-chat rows. Fed by the chat store's events and wrap-ups."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / STATS_FILE

    def on_event(self, event: ChatEvent) -> None:
        """Count what a chat event adds to the figures."""
