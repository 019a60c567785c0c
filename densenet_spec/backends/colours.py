"""Colours shared by the diagram backends: one per source of a dense block, and a value scale.

A colour must identify the layer an arc leaves, so it may not repeat inside a block. Up to eleven
sources get distinct colour-blind-friendly hues (Okabe-Ito, then Tol's bright); more get evenly
spaced stops of a perceptual ramp, so that neighbouring layers have neighbouring colours and the
legend can show the ramp. Heat maps use viridis, which stays readable in grey and for colour-blind
readers.
"""

from __future__ import annotations

PALETTE = (
    "#0072B2",
    "#D55E00",
    "#009E73",
    "#CC79A7",
    "#E69F00",
    "#56B4E9",
    "#AA3377",
    "#228833",
    "#EE6677",
    "#4477AA",
    "#666666",
)

# Anchors of a dark-blue -> teal -> green -> orange -> dark-red ramp (readable on white throughout).
_RAMP = ((0x1F, 0x3A, 0x93), (0x00, 0x86, 0x8B), (0x3D, 0x9B, 0x35), (0xD9, 0x8A, 0x00), (0xB0, 0x1E, 0x1E))
# viridis at 0, 0.25, 0.5, 0.75 and 1.
_VIRIDIS = ((0x44, 0x01, 0x54), (0x3B, 0x52, 0x8B), (0x21, 0x91, 0x8C), (0x5E, 0xC9, 0x62), (0xFD, 0xE7, 0x25))


def _interpolate(anchors: tuple[tuple[int, int, int], ...], x: float) -> tuple[int, int, int]:
    x = min(max(x, 0.0), 1.0) * (len(anchors) - 1)
    i = min(int(x), len(anchors) - 2)
    f = x - i
    a, b = anchors[i], anchors[i + 1]
    r, g, bl = (round(a[c] + (b[c] - a[c]) * f) for c in range(3))
    return r, g, bl


def _hex(rgb: tuple[int, int, int]) -> str:
    return "#{:02X}{:02X}{:02X}".format(*rgb)


def source_colours(count: int) -> list[str]:
    """``count`` distinct colours, in source order (block input first)."""
    if count <= len(PALETTE):
        return list(PALETTE[:count])
    colours = [_hex(_interpolate(_RAMP, i / (count - 1))) for i in range(count)]
    for i in range(1, count):  # rounding can make two neighbouring stops equal: nudge the later one
        while colours[i] in colours[:i]:
            r, g, b = (int(colours[i][k : k + 2], 16) for k in (1, 3, 5))
            colours[i] = _hex((r, g, min(b + 1, 255) if b < 255 else b - 1))
    return colours


def scale_colour(value: float) -> str:
    """The viridis colour of ``value`` in [0, 1] (clamped)."""
    return _hex(_interpolate(_VIRIDIS, value))


def text_colour(fill: str) -> str:
    """Black or white, whichever reads better on ``fill``."""
    r, g, b = (int(fill[k : k + 2], 16) for k in (1, 3, 5))
    return "#000000" if 0.299 * r + 0.587 * g + 0.114 * b > 140 else "#FFFFFF"
