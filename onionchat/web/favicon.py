"""Tab icons drawn on the server as small PNGs: a neutral one per site, and the staff alert with a count.

PNG because Tor Browser at Safest disables SVG; drawn here (a 5×7 digit font, zlib) because
there is no image library to depend on, and so that the alert needs no request of its own: it
is a data: URI in the alerts page, different for each count.
"""

from __future__ import annotations

import base64
import struct
import zlib
from typing import Final

SIZE: Final = 32
Colour = tuple[int, int, int, int]
CLEAR: Final[Colour] = (0, 0, 0, 0)
WHITE: Final[Colour] = (255, 255, 255, 255)
CALM: Final[Colour] = (11, 93, 75, 255)  # the stylesheet's accent: nothing waiting
WAITING: Final[Colour] = (166, 77, 0, 255)  # dark orange: someone waits
URGENT: Final[Colour] = (163, 38, 29, 255)  # the stylesheet's danger red
NEUTRAL: Final[Colour] = (200, 200, 205, 255)  # the visitor site: a plain grey square, nothing to read
DOT: Final[Colour] = (255, 214, 10, 255)  # a message waits for a reply

# 5×7 glyphs, one string of five 0/1 per row.
GLYPHS: Final[dict[str, tuple[str, ...]]] = {
    "0": ("01110", "10001", "10011", "10101", "11001", "10001", "01110"),
    "1": ("00100", "01100", "00100", "00100", "00100", "00100", "01110"),
    "2": ("01110", "10001", "00001", "00010", "00100", "01000", "11111"),
    "3": ("11111", "00010", "00100", "00010", "00001", "10001", "01110"),
    "4": ("00010", "00110", "01010", "10010", "11111", "00010", "00010"),
    "5": ("11111", "10000", "11110", "00001", "00001", "10001", "01110"),
    "6": ("00110", "01000", "10000", "11110", "10001", "10001", "01110"),
    "7": ("11111", "00001", "00010", "00100", "01000", "01000", "01000"),
    "8": ("01110", "10001", "10001", "01110", "10001", "10001", "01110"),
    "9": ("01110", "10001", "10001", "01111", "00001", "00010", "01100"),
    "+": ("00000", "00100", "00100", "11111", "00100", "00100", "00000"),
}


def png(pixels: list[list[Colour]]) -> bytes:
    """An RGBA PNG of ``pixels`` (rows of colours)."""
    height, width = len(pixels), len(pixels[0])
    raw = b"".join(b"\x00" + b"".join(bytes(p) for p in row) for row in pixels)  # filter 0 on every row

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")


def _square(colour: Colour) -> list[list[Colour]]:
    """A rounded square filling the icon."""
    last = SIZE - 1
    corners = {(0, 0), (0, 1), (1, 0), (0, last), (0, last - 1), (1, last), (last, 0), (last, 1), (last - 1, 0),
               (last, last), (last, last - 1), (last - 1, last)}
    return [[CLEAR if (y, x) in corners else colour for x in range(SIZE)] for y in range(SIZE)]


def _text(pixels: list[list[Colour]], text: str, scale: int) -> None:
    """Draw ``text`` in white, centred."""
    width = len(text) * 5 * scale + (len(text) - 1) * scale
    left, top = (SIZE - width) // 2, (SIZE - 7 * scale) // 2
    for i, char in enumerate(text):
        x0 = left + i * 6 * scale
        for row, bits in enumerate(GLYPHS[char]):
            for col, bit in enumerate(bits):
                if bit == "1":
                    for dy in range(scale):
                        for dx in range(scale):
                            pixels[top + row * scale + dy][x0 + col * scale + dx] = WHITE


def _disc(pixels: list[list[Colour]], cx: float, cy: float, radius: float, fill: Colour, rim: float) -> None:
    """A disc of ``fill`` with a white rim ``rim`` wide (0: none)."""
    for y in range(SIZE):
        for x in range(SIZE):
            distance = ((x + 0.5 - cx) ** 2 + (y + 0.5 - cy) ** 2) ** 0.5
            if distance <= radius - rim:
                pixels[y][x] = fill
            elif distance <= radius:
                pixels[y][x] = WHITE


def alert_png(waiting: int, *, urgent: bool, reply: bool) -> bytes:
    """The staff alert icon: the number waiting (none drawn for 0), red if urgent, a dot if a reply is due."""
    background = URGENT if urgent else WAITING if waiting else CALM
    pixels = _square(background)
    if waiting == 0:
        _disc(pixels, SIZE / 2, SIZE / 2, 8.0, background, 2.5)  # a ring: the brand, nothing to count
    elif waiting > 99:
        _text(pixels, "+", 3)
    elif waiting > 9:
        _text(pixels, str(waiting), 2)
    elif waiting > 0:
        _text(pixels, str(waiting), 3)
    if reply:
        _disc(pixels, SIZE - 4.0, 4.0, 4.0, DOT, 1.0)  # in the corner the digits leave free
    return png(pixels)


def data_uri(image: bytes) -> str:
    """A PNG as a data: URI (allowed by the CSP's img-src, needs no request of its own)."""
    return "data:image/png;base64," + base64.b64encode(image).decode("ascii")


class Favicons:
    """Alert icons as data: URIs, drawn once per state (at most 101 counts × 4 states)."""

    __slots__ = ("_drawn",)

    def __init__(self) -> None:
        self._drawn: dict[tuple[int, bool, bool], str] = {}

    def alert(self, waiting: int, *, urgent: bool, reply: bool) -> str:
        """The alert icon's data: URI for this state."""
        key = (min(waiting, 100), urgent, reply)
        uri = self._drawn.get(key)
        if uri is None:
            uri = self._drawn[key] = data_uri(alert_png(key[0], urgent=urgent, reply=reply))
        return uri


# /favicon.ico of each site: the staff icon with nothing waiting; for visitors a grey square.
STAFF_ICON: Final = alert_png(0, urgent=False, reply=False)
VISITOR_ICON: Final = png(_square(NEUTRAL))
