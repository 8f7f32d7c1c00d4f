"""Figures, percentiles and the printed table."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(slots=True)
class Row:
    """One line of the table: a figure, its reference or target, and whether it passes."""

    bench: str
    figure: str
    value: str
    compare: str = ""  # the same-run reference, or the target
    ratio: str = ""
    verdict: str = ""  # "ok", "MISS", or "" for figures without a target


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def ms(seconds: float) -> str:
    """Seconds as milliseconds, to one decimal."""
    return "n/a" if math.isnan(seconds) else f"{seconds * 1000:.1f} ms"


def verdict(ok: bool) -> str:
    """The verdict column."""
    return "ok" if ok else "MISS"


def table(rows: Sequence[Row], machine: dict[str, str], notes: Sequence[str]) -> str:
    """The whole report as plain text (fixed-width columns, also valid inside a Markdown code block)."""
    head = ("benchmark", "figure", "value", "reference / target", "ratio", "verdict")
    cells = [head] + [(r.bench, r.figure, r.value, r.compare, r.ratio, r.verdict) for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(head))]
    lines = [f"machine: {machine['cpu']}, {machine['cores']} cores, kernel {machine['kernel']}; "
             f"Python {machine['python']}, aiohttp {machine['aiohttp']}; {machine['date']}", ""]
    for n, cell in enumerate(cells):
        lines.append("  ".join(c.ljust(w) for c, w in zip(cell, widths, strict=True)).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    if notes:
        lines.append("")
        lines.extend(f"note: {note}" for note in notes)
    return "\n".join(lines)
