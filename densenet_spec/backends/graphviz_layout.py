"""Computed positions for the diagrams: boxes, arcs and frames pinned for ``neato -n2``.

Graphviz's ``dot`` ranks nodes itself; on a dense block it zig-zags the layers and threads the
connections through them, worse the larger the block. So the diagram backends place everything
here and let Graphviz only draw: every node gets its ``pos`` and a fixed size, every edge its
spline, every frame (cluster) its ``bb``, and ``neato -n2`` renders them as given.

Geometry is computed in *row coordinates*: ``u`` runs along a row in execution order, ``v``
across it, with the dense-connection arcs on the ``+v`` side. :class:`Orientation` maps them to
Graphviz's ``x, y`` in points: ``LR`` rows run left to right with arcs above, ``TB`` rows run top to
bottom with arcs to the right. Text stays horizontal either way, which is why a box's extent
along and across the row depends on the orientation (:meth:`Orientation.extent`).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

Point = tuple[float, float]

FONT = "Helvetica"
CHAR_WIDTH = 0.6  # of the font size: a safe upper bound for Helvetica's mean glyph width
LINE_HEIGHT = 1.25  # of the font size
PAD = 8.0  # points around a box's text


def text_size(text: str, fontsize: float) -> tuple[float, float]:
    """An upper estimate of ``text``'s width and height in points (lines split on ``\\n``)."""
    lines = text.split("\n") if text else []
    width = max((len(line) for line in lines), default=0) * fontsize * CHAR_WIDTH
    return width, len(lines) * fontsize * LINE_HEIGHT


@dataclass(frozen=True)
class Orientation:
    """How row coordinates map to the drawing: ``LR`` (rows across, arcs up) or ``TB`` (rows down, arcs right)."""

    rankdir: Literal["LR", "TB"] = "LR"

    def point(self, u: float, v: float) -> Point:
        return (u, v) if self.rankdir == "LR" else (v, -u)

    def size(self, du: float, dv: float) -> tuple[float, float]:
        """A box's width and height in the drawing from its extents along and across the row."""
        return (du, dv) if self.rankdir == "LR" else (dv, du)

    def extent(self, text_w: float, text_h: float) -> tuple[float, float]:
        """The extents along and across the row that a horizontal text needs."""
        return (text_w, text_h) if self.rankdir == "LR" else (text_h, text_w)


@dataclass
class Box:
    """A node in row coordinates: centre ``u``, ``v``, extents ``du`` (along) and ``dv`` (across)."""

    name: str
    u: float
    v: float
    du: float
    dv: float
    attrs: dict[str, str] = field(default_factory=dict)

    @property
    def top(self) -> float:
        """The side the arcs leave and land on (``+v``)."""
        return self.v + self.dv / 2

    @property
    def bottom(self) -> float:
        return self.v - self.dv / 2

    @property
    def left(self) -> float:
        return self.u - self.du / 2

    @property
    def right(self) -> float:
        return self.u + self.du / 2


@dataclass
class Curve:
    """An edge drawn along a piecewise cubic Bezier (``3n + 1`` points), arrowhead at ``tip``."""

    tail: str
    head: str
    points: list[Point]
    tip: Point | None
    attrs: dict[str, str] = field(default_factory=dict)


@dataclass
class Frame:
    """A cluster drawn as a rounded frame, its label at ``label_at`` (row coordinates)."""

    name: str
    u0: float
    v0: float
    u1: float
    v1: float
    label: str
    label_at: Point
    attrs: dict[str, str] = field(default_factory=dict)


def arc(source: Box, target: Box, leave: float, land: float, lift: float) -> Curve:
    """A dense connection: up from ``source``'s top at ``u = leave``, over, down onto ``target`` at ``land``.

    Both ends are vertical, so the arc never enters a box beside its ends as long as ``lift``
    clears the boxes between (the caller makes it grow with the span).
    """
    start = (leave, source.top)
    end = (land, target.top + ARROW)
    peak = max(source.top, target.top) + lift
    mid = (leave + land) / 2
    k = KAPPA
    points = [
        start,
        (leave, start[1] + k * (peak - start[1])),
        (mid - k * (mid - leave), peak),
        (mid, peak),
        (mid + k * (land - mid), peak),
        (land, end[1] + k * (peak - end[1])),
        end,
    ]
    return Curve(source.name, target.name, points, (land, target.top))


KAPPA = 0.5523  # control-point distance of a Bezier quarter ellipse: the arc's points stay inside its box


ARROW = 4.0  # points between a spline's end and its arrow tip


def polyline(tail: str, head: str, corners: Sequence[Point]) -> Curve:
    """Straight segments through ``corners`` as a Bezier spline; the last corner is the arrow tip."""
    *path, tip = corners
    last = path[-1]
    dx, dy = tip[0] - last[0], tip[1] - last[1]
    length = max((dx * dx + dy * dy) ** 0.5, 1e-9)
    path = [*path, (tip[0] - dx / length * ARROW, tip[1] - dy / length * ARROW)]
    points = [path[0]]
    for a, b in itertools.pairwise(path):
        points += [
            (a[0] + (b[0] - a[0]) / 3, a[1] + (b[1] - a[1]) / 3),
            (a[0] + 2 * (b[0] - a[0]) / 3, a[1] + 2 * (b[1] - a[1]) / 3),
            b,
        ]
    return Curve(tail, head, points, tip)


def bezier_points(points: Sequence[Point], steps: int = 16) -> Iterable[Point]:
    """Samples of a piecewise cubic Bezier (for extents and tests)."""
    for i in range(0, len(points) - 1, 3):
        p0, p1, p2, p3 = points[i : i + 4]
        for s in range(steps + 1):
            t = s / steps
            a, b, c, d = (1 - t) ** 3, 3 * (1 - t) ** 2 * t, 3 * (1 - t) * t**2, t**3
            yield (
                a * p0[0] + b * p1[0] + c * p2[0] + d * p3[0],
                a * p0[1] + b * p1[1] + c * p2[1] + d * p3[1],
            )


def spread(lo: float, hi: float, count: int) -> list[float]:
    """``count`` evenly spaced positions in ``[lo, hi]`` (the middle for one)."""
    if count == 1:
        return [(lo + hi) / 2]
    return [lo + (hi - lo) * i / (count - 1) for i in range(count)]


@dataclass
class Drawing:
    """Everything a diagram draws, in row coordinates, and its DOT text for ``neato -n2``."""

    name: str
    orientation: Orientation
    boxes: list[Box] = field(default_factory=list)
    curves: list[Curve] = field(default_factory=list)
    frames: list[Frame] = field(default_factory=list)
    graph_attrs: dict[str, str] = field(default_factory=dict)

    def extent(self) -> tuple[float, float, float, float]:
        """``u0, v0, u1, v1`` around every box, curve and frame."""
        us: list[float] = []
        vs: list[float] = []
        for box in self.boxes:
            us += [box.left, box.right]
            vs += [box.bottom, box.top]
        for curve in self.curves:
            for u, v in bezier_points(curve.points, 8):
                us.append(u)
                vs.append(v)
        for frame in self.frames:
            us += [frame.u0, frame.u1]
            vs += [frame.v0, frame.v1]
        return min(us), min(vs), max(us), max(vs)

    def to_dot(self) -> str:
        """DOT text with every position pinned; render it with ``neato -n2`` (:func:`render`)."""
        o = self.orientation
        lines = [
            "// Positions are pinned: render this file with `neato -n2 -Tsvg` (not `dot`).",
            f"digraph {_quote(self.name)} {{",
        ]
        lines.append(f"\tgraph [{_attrs({'layout': 'neato', 'splines': 'true', **self.graph_attrs})}]")
        lines.append(f"\tnode [{_attrs({'fontname': FONT, 'fontsize': '10', 'fixedsize': 'true', 'shape': 'box'})}]")
        lines.append(f"\tedge [{_attrs({'fontname': FONT})}]")
        for frame in self.frames:
            x0, y0 = o.point(frame.u0, frame.v0)
            x1, y1 = o.point(frame.u1, frame.v1)
            lx, ly = o.point(*frame.label_at)
            bb = f"{min(x0, x1):.1f},{min(y0, y1):.1f},{max(x0, x1):.1f},{max(y0, y1):.1f}"
            attrs = {"bb": bb, "label": frame.label, "lp": f"{lx:.1f},{ly:.1f}", **frame.attrs}
            lines.append(f"\tsubgraph {_quote('cluster_' + frame.name)} {{ graph [{_attrs(attrs)}] }}")
        for box in self.boxes:
            x, y = o.point(box.u, box.v)
            w, h = o.size(box.du, box.dv)
            attrs = {"pos": f"{x:.1f},{y:.1f}", "width": f"{w / 72:.3f}", "height": f"{h / 72:.3f}", **box.attrs}
            lines.append(f"\t{_quote(box.name)} [{_attrs(attrs)}]")
        for curve in self.curves:
            points = " ".join("{:.1f},{:.1f}".format(*o.point(*p)) for p in curve.points)
            if curve.tip is not None:
                points = "e,{:.1f},{:.1f} ".format(*o.point(*curve.tip)) + points
            attrs = {"pos": points, **curve.attrs}
            lines.append(f"\t{_quote(curve.tail)} -> {_quote(curve.head)} [{_attrs(attrs)}]")
        lines.append("}")
        return "\n".join(lines) + "\n"


def _quote(text: str) -> str:
    if text.startswith("<") and text.endswith(">"):
        return text  # an HTML-like label
    # Graphviz reads entities (&lt;) in quoted labels too: a title's own & must stay an &.
    escaped = text.replace("&", "&amp;").replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def _attrs(attrs: dict[str, str]) -> str:
    return " ".join(f"{key}={_quote(value)}" for key, value in attrs.items())
