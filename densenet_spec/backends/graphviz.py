"""IR to Graphviz diagrams of the dense connections, in the style of the DenseNet paper.

Two levels of detail, both laid out here (:mod:`.graphviz_layout`) and only drawn by Graphviz:

- ``layers`` (the paper's Figure 1): each dense block is one row of layers in execution order,
  from the layer feeding the block to the one it feeds. Every connection is an arc from its
  source's top to its target's top, longer spans higher, coloured by source with colours that do
  not repeat inside a block. Every box's number is the channels its layer reads (stem, transitions
  and head too), and its extent across the row grows with it. Several blocks are stacked rows, the
  layer ending one row repeated (dashed, the same number) at the start of the next.
- ``blocks`` (the paper's Figure 2): stages left to right, each dense block a frame holding the
  dense-connection motif (three layers, or as many as a smaller block has), transitions between,
  channels and sizes under each stage.

Labels are short (``L3``, ``T1``) with a legend mapping them to module paths, full (the module
paths), or none. The DOT text is deterministic; svg, png and pdf are rendered by ``neato -n2``.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from ..errors import RenderWarning, ToolError
from ..ir import IR, Layer, format_size
from . import views
from .colours import source_colours
from .graphviz_layout import (
    PAD,
    Box,
    Curve,
    Drawing,
    Frame,
    Orientation,
    arc,
    bezier_points,
    polyline,
    spread,
    text_size,
)
from .views import Labels

FILL = {"stem": "#F2F2F2", "dense_layer": "#FFFFFF", "transition": "#FFF4D6", "head": "#E8F1FA", "io": "#FFFFFF"}
FONTSIZE = 10.0
CAPTION_FONTSIZE = 9.0
MIN_ALONG = 30.0  # points: the narrowest box along a row
GAP = 10.0  # points between neighbouring boxes along a row
ROW_GAP = 28.0  # points between a row's caption and the next row's arcs
SPINE = 24.0  # points: where the block view's stages sit across the drawing
MOTIF_ALONG = 14.0  # points: a motif box's extent along the spine
MOTIF_STEP = 30.0  # points between the centres of neighbouring motif boxes
MOTIF_MARGIN = 14.0  # points from where a block starts to its first motif box


@dataclass(frozen=True)
class Style:
    """The drawing options every view takes."""

    labels: Labels = "short"
    legend: bool = True
    title: str | None = None
    dpi: float | None = None
    rankdir: Literal["LR", "TB"] = "LR"


# ----------------------------------------------------------------------------- rows of layers


@dataclass
class Row:
    """One dense block as drawn: its boxes in order (input, layers, output), its arcs and caption.

    ``sources`` maps the IR name of each source (the block input first) to its colour index.
    """

    boxes: list[Box]
    sources: dict[str, int]
    caption: Box
    curves: list[Curve] = field(default_factory=list)

    @property
    def start(self) -> Box:
        """The block input's box (after the stem chain, if any)."""
        return next(box for box in self.boxes if _ir_name(box.name) in self.sources)

    @property
    def output(self) -> str:
        """The IR name of the layer that the block feeds."""
        return _ir_name(self.boxes[self.boxes.index(self.start) + len(self.sources)].name)

    def shift(self, dv: float) -> None:
        """Move the row across by ``dv``."""
        for box in self.boxes:
            box.v += dv
        for curve in self.curves:
            curve.points = [(u, v + dv) for u, v in curve.points]
            if curve.tip is not None:
                curve.tip = (curve.tip[0], curve.tip[1] + dv)

    def top(self) -> float:
        """The furthest the row reaches on the arcs' side."""
        tops = [box.top for box in self.boxes]
        return max(tops + [v for curve in self.curves for _, v in bezier_points(curve.points, 8)])


def _ir_name(drawn: str) -> str:
    """The IR layer a box draws: a repeated block input is drawn as ``NAME~BLOCK``."""
    return drawn.split("~")[0]


def _box(name: str, text: str, across: float, o: Orientation, attrs: dict[str, str]) -> Box:
    """A box that fits ``text`` and is at least ``across`` wide across the row."""
    along, need = _text_extent(text, o)
    return Box(name, 0.0, 0.0, max(along, MIN_ALONG), max(need, across), {"label": text, **attrs})


def _text_extent(text: str, o: Orientation) -> tuple[float, float]:
    """The extents along and across the row that a box's ``text`` needs, padding included."""
    text_w, text_h = text_size(text, FONTSIZE)
    return o.extent(text_w + PAD, text_h + PAD)


def _caption(name: str, text: str, o: Orientation) -> Box:
    text_w, text_h = text_size(text, CAPTION_FONTSIZE)
    along, across = o.extent(text_w, text_h)
    attrs = {"label": text, "shape": "plaintext", "fontsize": f"{CAPTION_FONTSIZE:g}"}
    return Box(name, 0.0, 0.0, along, across, attrs)


def _across(channels: int, most: int, o: Orientation) -> float:
    """The extent across the row of a box reading ``channels``: grows linearly up to ``most``."""
    low, high = (34.0, 80.0) if o.rankdir == "LR" else (40.0, 110.0)
    return low + (high - low) * channels / max(most, 1)


def _layer_text(layer: Layer, style: Style) -> str:
    """The box's text: the layer's name and the channels it reads, the one number every box shows
    (the legend says so), also for stem, transitions and head, whose output differs."""
    name = views.short_name(layer) if style.labels == "short" else layer.name
    return "" if style.labels == "none" else f"{name}\n{layer.in_channels}"


def _place_row(boxes: list[Box]) -> None:
    """Lay ``boxes`` along ``u`` from 0 with their bottoms on ``v = 0``."""
    u = 0.0
    for box in boxes:
        box.u = u + box.du / 2
        box.v = box.dv / 2
        u += box.du + GAP


@dataclass(frozen=True)
class RowPlan:
    """What one row holds: its block, the chains of stem and head layers, whether its input repeats."""

    block: int
    chain_in: list[Layer]
    chain_out: list[Layer]
    proxy: bool


@dataclass(frozen=True)
class Scale:
    """How wide a layer view's boxes are across their rows: linear in the channels their layers read
    up to ``most``, plus one ``margin`` shared by every box where some text needs more (long names
    across a TB column).

    One shared margin keeps the boxes ordered as their channels are, in every row: the arcs rise
    above the larger of their two ends and so clear every box between, which a box widened to fit
    its own text alone (``transition1`` narrower than ``denselayer6``) would break.
    """

    most: int
    margin: float


def _scale(ir: IR, plans: list[RowPlan], style: Style) -> Scale:
    o = Orientation(style.rankdir)
    layers = [layer for plan in plans for layer in _drawn_layers(ir, plan)]
    most = max(layer.in_channels for layer in layers)
    short = [_text_extent(_layer_text(x, style), o)[1] - _across(x.in_channels, most, o) for x in layers]
    return Scale(most, max(0.0, *short))


def _drawn_layers(ir: IR, plan: RowPlan) -> list[Layer]:
    """The layers of one row in order: stem chain, block input, the block's layers, output, head chain."""
    members = ir.blocks()[plan.block - 1]
    source, target = _block_ends(ir, members)
    return [*plan.chain_in, source, *members, target, *plan.chain_out]


def _block_ends(ir: IR, members: list[Layer]) -> tuple[Layer, Layer]:
    """The layer that feeds a block and the one it feeds."""
    source = ir.layer(ir.inputs(members[0].name)[0])
    return source, ir.layer(next(iter(ir.graph.successors(members[-1].name))))


def _row(ir: IR, plan: RowPlan, scale: Scale, style: Style) -> Row:
    """Boxes of one block: the stem chain (first row), input, layers, output, the head chain (last row)."""
    o = Orientation(style.rankdir)
    members = ir.blocks()[plan.block - 1]
    first = members[0]
    source, target = _block_ends(ir, members)
    colours = source_colours(len(members) + 1)
    attrs = {layer.name: _fill(layer) for layer in _drawn_layers(ir, plan)}
    for i, layer in enumerate([source, *members]):
        attrs[layer.name] |= {"color": colours[i], "penwidth": "1.6"}
    if plan.proxy:
        attrs[source.name]["style"] = "rounded,dashed"
    boxes = []
    for layer in _drawn_layers(ir, plan):
        name = f"{layer.name}~{plan.block}" if plan.proxy and layer is source else layer.name
        text = _layer_text(layer, style)
        along = max(_text_extent(text, o)[0], MIN_ALONG)
        across = _across(layer.in_channels, scale.most, o) + scale.margin
        boxes.append(Box(name, 0.0, 0.0, along, across, {"label": text, **attrs[layer.name]}))
    _place_row(boxes)
    sources = {source.name: 0} | {layer.name: i for i, layer in enumerate(members, start=1)}
    caption = (
        f"{first.stage}: {views.count(len(members), 'layer')}, k={first.out_channels}, "
        f"{first.in_channels} -> {target.in_channels} ch, {format_size(first.out_size)}"
    )
    return Row(boxes, sources, _caption(f"caption~{plan.block}", caption, o))


def _fill(layer: Layer) -> dict[str, str]:
    key = layer.stage if layer.stage in ("stem", "head") else layer.kind
    return {"fillcolor": FILL.get(key, "#FFFFFF"), "style": "rounded,filled"}


def _row_curves(ir: IR, row: Row) -> list[Curve]:
    """The row's arcs (dense connections) and straight chain edges, each IR edge once."""
    index = {_ir_name(box.name): i for i, box in enumerate(row.boxes)}
    by_name = {_ir_name(box.name): box for box in row.boxes}
    colours = source_colours(len(row.sources))
    pairs = [(a, b) for a, b in ir.graph.edges if a in index and b in index]
    outgoing: dict[str, list[str]] = {}
    incoming: dict[str, list[str]] = {}
    for a, b in pairs:
        outgoing.setdefault(a, []).append(b)
        incoming.setdefault(b, []).append(a)
    output = row.output
    curves = []
    for a, b in pairs:
        ident = {"id": f"{a} -> {b}", "tooltip": f"{a} -> {b}: {ir.layer(a).out_channels} ch"}
        if a in row.sources and (b in row.sources or b == output):
            ends = (a, b, outgoing[a], incoming[b])
            curves.append(_dense_arc(by_name[a], by_name[b], ends, index, colours[row.sources[a]], ident))
        else:
            curves.append(_straight(by_name[a], by_name[b], ident))
    return curves


def _dense_arc(
    tail: Box,
    head: Box,
    ends: tuple[str, str, list[str], list[str]],
    index: dict[str, int],
    colour: str,
    attrs: dict[str, str],
) -> Curve:
    """One dense connection between the layers ``ends[0]`` and ``ends[1]``, given every target of the
    first (``ends[2]``) and every source of the second (``ends[3]``).

    Farther targets leave further left, farther sources land further right, so that arcs sharing
    an end nest instead of crossing there.
    """
    t_name, h_name, targets, sources = ends
    leaving = sorted(targets, key=lambda n: -index[n])
    landing = sorted(sources, key=lambda n: -index[n])
    leave = spread(tail.u - 0.4 * tail.du, tail.u - 0.06 * tail.du, len(leaving))[leaving.index(h_name)]
    land = spread(head.u + 0.06 * head.du, head.u + 0.4 * head.du, len(landing))[landing.index(t_name)]
    span = land - leave
    curve = arc(tail, head, leave, land, 8.0 + 0.2 * span)
    curve.attrs = {"color": colour, "arrowsize": "0.35", "penwidth": "0.9", **attrs}
    return curve


def _straight(tail: Box, head: Box, attrs: dict[str, str]) -> Curve:
    """A chain edge between neighbours, through the middle of the lower of the two boxes."""
    v = min(tail.v, head.v)
    curve = polyline(tail.name, head.name, [(tail.right, v), (head.left, v)])
    curve.attrs = {"arrowsize": "0.5", "color": "#444444", **attrs}
    return curve


def _connector(previous: Row, row: Row, gap_v: float) -> Curve:
    """From the layer that ends one row to its repetition that starts the next, around the outside.

    It turns down beyond the previous row's caption too: a row narrower than its caption (a block
    of one layer) would otherwise have it cross the caption's text.
    """
    start = row.start
    end = next(box for box in previous.boxes if box.name == _ir_name(start.name))
    out_u, in_u = max(end.right, previous.caption.right) + GAP, start.left - GAP / 2
    corners = [
        (end.right, end.v),
        (out_u, end.v),
        (out_u, gap_v),
        (in_u, gap_v),
        (in_u, start.v),
        (start.left, start.v),
    ]
    curve = polyline(end.name, start.name, corners)
    curve.attrs = {"style": "dashed", "color": "#888888", "arrowsize": "0.5", "id": f"continues: {end.name}"}
    return curve


def _plans(ir: IR, blocks: list[int] | None) -> list[RowPlan]:
    """The rows: chosen blocks (all by default, then with the stem before and the head after)."""
    chosen = blocks or list(range(1, len(ir.blocks()) + 1))
    stages = ir.stages()
    placed: set[str] = set()
    plans = []
    for number in chosen:
        members = ir.blocks()[number - 1]
        first_input = ir.inputs(members[0].name)[0]
        chain_in = (
            [x for x in stages.get("stem", []) if x.name != first_input] if blocks is None and number == 1 else []
        )
        last = number == len(ir.blocks())
        chain_out = stages.get("head", [])[1:] if blocks is None and last else []
        plans.append(RowPlan(number, chain_in, chain_out, first_input in placed))
        placed |= {first_input, *(m.name for m in members), *ir.graph.successors(members[-1].name)}
    return plans


def layers_drawing(ir: IR, blocks: list[int] | None, style: Style) -> Drawing:
    """The layer view: one row per chosen block, stacked; the stem and head chains when all are shown."""
    o = Orientation(style.rankdir)
    plans = _plans(ir, blocks)
    scale = _scale(ir, plans, style)
    rows = [_row(ir, plan, scale, style) for plan in plans]
    for row in rows:
        row.curves = _row_curves(ir, row)
    drawing = Drawing(ir.info.name, o)
    offset = 0.0
    previous: Row | None = None
    for row in rows:
        gap_v = _stack(row, previous, offset, o)
        if previous is not None and row.start.name != _ir_name(row.start.name):  # a repeated input
            drawing.curves.append(_connector(previous, row, gap_v))
        drawing.boxes += [*row.boxes, row.caption]
        drawing.curves += row.curves
        offset, previous = _next_offset(row, o), row
    _finish(drawing, style, _layers_title(ir, blocks), _layers_legend(ir, rows, style))
    return drawing


def _stack(row: Row, previous: Row | None, offset: float, o: Orientation) -> float:
    """Put ``row`` at ``offset`` across (below the previous row in LR, right of it in TB) with its
    caption; returns where the connector from the previous row runs."""
    if o.rankdir == "LR":
        shift = offset - row.top() if previous is not None else 0.0
        row.shift(shift)
        row.caption.u = row.boxes[0].left + row.caption.du / 2
        row.caption.v = shift - 6.0 - row.caption.dv / 2
        return offset + ROW_GAP / 2
    row.shift(offset)
    row.caption.u = row.boxes[0].left - 2 * GAP - row.caption.du / 2
    row.caption.v = offset + row.caption.dv / 2
    return offset - ROW_GAP / 2


def _next_offset(row: Row, o: Orientation) -> float:
    if o.rankdir == "LR":
        return row.caption.bottom - ROW_GAP
    return max(row.top(), row.caption.top) + ROW_GAP


def _layers_title(ir: IR, blocks: list[int] | None) -> str:
    if blocks is None:
        return f"{ir.info.name}: dense connections (all blocks)"
    which = ("block " if len(blocks) == 1 else "blocks ") + ", ".join(map(str, blocks))
    return f"{ir.info.name}: dense connections ({which})"


def _layers_legend(ir: IR, rows: list[Row], style: Style) -> list[tuple[str, str]]:
    """Legend lines ``(key, meaning)``."""
    lines: list[tuple[str, str]] = []
    if style.labels == "short":
        numbers = sorted({_block_of(ir, row) for row in rows})
        for b in numbers:
            count = len(ir.blocks()[b - 1])
            key = views.span("L", count)  # each row's layers count from L1: say whose they are
            key = f"B{b}: {key}" if len(numbers) > 1 else key
            lines.append((key, views.span(f"features.denseblock{b}.denselayer", count)))
        drawn = sorted({_ir_name(box.name) for row in rows for box in row.boxes})
        lines += [(views.short_name(ir.layer(n)), n) for n in drawn if ir.layer(n).kind == "transition"]
    box_side = "height" if style.rankdir == "LR" else "width"
    if style.labels != "none":
        lines.append(("number", f"channels the layer reads (box {box_side} grows with them)"))
    else:
        lines.append(("box", f"{box_side} grows with the channels the layer reads"))
    lines.append(("arc", "a dense connection, coloured by its source (block input first)"))
    return lines


def _block_of(ir: IR, row: Row) -> int:
    layer = ir.layer(next(name for name, i in row.sources.items() if i == 1))
    return layer.block or 0


# ----------------------------------------------------------------------------- the block view


def blocks_drawing(ir: IR, style: Style) -> Drawing:
    """The block view: input, stem, dense blocks (motif in a frame), transitions, head, prediction."""
    o = Orientation(style.rankdir)
    drawing = Drawing(ir.info.name, o)
    u = 0.0
    previous: Box | None = None
    captions: list[Box] = []
    for stage in views.stage_views(ir, style.labels):
        caption = _caption(f"caption~{stage.name}", stage.caption, o)
        place = _place_block if stage.kind == "block" else _place_stage
        first, last, end = place(drawing, stage, caption, u)
        if previous is not None:
            drawing.curves.append(_spine_edge(previous, first, SPINE))
        captions.append(caption)
        previous = last
        u = max(end, caption.right) + GAP * 2
    low = min(box.bottom for box in drawing.boxes)
    for caption in captions:
        caption.v = low - 8 - caption.dv / 2
    drawing.boxes += captions
    top = max(v for curve in drawing.curves for _, v in bezier_points(curve.points, 8))
    for frame in drawing.frames:
        frame.v0, frame.v1 = low - 4, top + 6
    _finish(drawing, style, views.blocks_title(ir), views.blocks_legend(ir, style.labels))
    return drawing


def _place_stage(drawing: Drawing, stage: views.StageView, caption: Box, u: float) -> tuple[Box, Box, float]:
    """A stem, transition, head or end box from ``u`` on the spine, its caption under it; returns
    the box (as the first and the last) and where it ends along the spine."""
    o = drawing.orientation
    box = _box(stage.name, stage.label, 0, o, {"fillcolor": FILL[stage.kind], "style": "rounded,filled"})
    box.u, box.v = u + box.du / 2, SPINE
    drawing.boxes.append(box)
    caption.u = box.u
    return box, box, box.right


def _place_block(drawing: Drawing, stage: views.StageView, caption: Box, u: float) -> tuple[Box, Box, float]:
    """A dense block from ``u``: its motif in a frame, its caption centred under it; returns the
    motif's first and last boxes and where the frame ends.

    A motif narrower than its caption (a block of one or two layers) moves right so that the
    caption starts no earlier than ``u`` and keeps clear of the stage before.
    """
    count = _motif_boxes(stage)
    half = MOTIF_MARGIN + (count - 1) * MOTIF_STEP / 2 + MOTIF_ALONG / 2  # from u to the motif's centre
    start = u + max(0.0, caption.du / 2 - half)
    motif, arcs = _motif(stage, start, SPINE, drawing.orientation)
    first, last = motif[0], motif[-1]
    caption.u = (first.left + last.right) / 2
    frame = Frame(stage.name, first.left - 10, 0, last.right + 10, 0, "", (0, 0), {"style": "rounded,dashed"})
    frame.attrs["color"] = "#999999"
    drawing.boxes += motif
    drawing.curves += arcs
    drawing.frames.append(frame)
    return first, last, frame.u1


def _motif_boxes(stage: views.StageView) -> int:
    """The motif's boxes: the block's input and its first three layers, or as many as it has."""
    return min(stage.layers, 3) + 1 if stage.layers else 4


def _motif(stage: views.StageView, u: float, spine: float, o: Orientation) -> tuple[list[Box], list[Curve]]:
    """Feature-map boxes, growing, with every dense connection between them: a block in the paper's
    look. Four boxes (three layers after the input) unless the block has fewer layers: a one-layer
    block drawn with three would say what the caption denies."""
    count = _motif_boxes(stage)
    colours = source_colours(count)
    boxes = []
    low = 22.0 if o.rankdir == "LR" else 26.0
    for i in range(count):
        across = low + 9.0 * i
        attrs = {"label": "", "color": colours[i], "penwidth": "1.6", "style": "filled", "fillcolor": "#FFFFFF"}
        box = Box(f"{stage.name}~{i}", 0, 0, MOTIF_ALONG, across, attrs)
        box.u = u + MOTIF_MARGIN + i * MOTIF_STEP + MOTIF_ALONG / 2
        box.v = spine - low / 2 + across / 2
        boxes.append(box)
    curves = []
    names = [b.name for b in boxes]
    index = {n: i for i, n in enumerate(names)}
    for i in range(count):
        for j in range(i + 1, count):
            ends = (names[i], names[j], names[i + 1 :], names[:j])
            curve = _dense_arc(boxes[i], boxes[j], ends, index, colours[i], {})
            curve.attrs["class"] = "motif"
            curves.append(curve)
    return boxes, curves


def _spine_edge(tail: Box, head: Box, spine: float) -> Curve:
    curve = polyline(tail.name, head.name, [(tail.right, spine), (head.left, spine)])
    curve.attrs = {"arrowsize": "0.6", "color": "#333333", "penwidth": "1.2"}
    return curve


# ----------------------------------------------------------------------------- title, legend, DOT


def _finish(drawing: Drawing, style: Style, title: str, legend: list[tuple[str, str]]) -> None:
    """Title, legend (below the drawing) and graph attributes."""
    text = title if style.title is None else style.title
    if style.legend and legend:
        _add_legend(drawing, legend)
    attrs = {"bgcolor": "white", "pad": "0.2"}
    if text:
        # DOT reads a value in <...> as an HTML label: a user's title such as '<b>' or '<>' is text.
        label = f"<{_html(text)}>" if text.startswith("<") and text.endswith(">") else text
        attrs |= {"label": label, "labelloc": "t", "fontname": "Helvetica", "fontsize": "16"}
    if style.dpi is not None:
        attrs["dpi"] = f"{style.dpi:g}"
    drawing.graph_attrs = attrs


def _add_legend(drawing: Drawing, legend: list[tuple[str, str]]) -> None:
    rows = "".join(
        f'<TR><TD ALIGN="LEFT"><B>{_html(key)}</B></TD><TD ALIGN="LEFT">{_html(text)}</TD></TR>' for key, text in legend
    )
    label = f'<<TABLE BORDER="0" CELLBORDER="0" CELLSPACING="0" CELLPADDING="2">{rows}</TABLE>>'
    key_w = max(len(k) for k, _ in legend) * CAPTION_FONTSIZE * 0.62
    text_w = max(len(t) for _, t in legend) * CAPTION_FONTSIZE * 0.5
    width, height = key_w + text_w + 24, len(legend) * (CAPTION_FONTSIZE * 1.25 + 4) + 12
    along, across = drawing.orientation.extent(width, height)
    u0, v0, _, _ = drawing.extent()
    attrs = {
        "label": label,
        "shape": "box",
        "style": "rounded",
        "color": "#BBBBBB",
        "fontsize": f"{CAPTION_FONTSIZE:g}",
    }
    box = Box("legend", u0 + along / 2, v0 - 16 - across / 2, along, across, attrs)
    if drawing.orientation.rankdir == "TB":
        box.u, box.v = u0 + along / 2, v0 - 16 - across / 2
    drawing.boxes.append(box)


def _html(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def to_dot(
    ir: IR,
    *,
    detail: str = "blocks",
    blocks: list[int] | None = None,
    rankdir: str = "LR",
    labels: str = "short",
    legend: bool = True,
    title: str | None = None,
    dpi: float | None = None,
) -> str:
    """The diagram as DOT text with pinned positions (render with ``neato -n2``, see :func:`render`)."""
    problem = views.title_problem(title)
    if problem:
        raise ValueError(problem)
    style = Style(labels, legend, title, dpi, rankdir)  # type: ignore[arg-type]
    drawing = layers_drawing(ir, blocks, style) if detail == "layers" else blocks_drawing(ir, style)
    return drawing.to_dot()


def render(source: str, fmt: str) -> bytes:
    """Render DOT text with Graphviz (``neato -n2`` when its positions are pinned).

    Raises ToolError where Graphviz is missing or fails (its last message line, not a traceback).
    What Graphviz changed of the request (a png over its size limit, scaled down) comes as a
    :class:`~densenet_spec.errors.RenderWarning`; other lines it writes as warnings too.
    """
    pinned = "layout=neato" in source or 'layout="neato"' in source
    program = shutil.which("neato" if pinned else "dot")
    if program is None:
        raise ToolError(
            f"rendering {fmt} needs Graphviz's `dot` program, which is not installed: "
            "apt-get install graphviz (Debian, Ubuntu), brew install graphviz (macOS), "
            "or write DOT with --to dot"
        )
    args = [program, *(["-n2"] if pinned else []), f"-T{fmt}"]
    run = subprocess.run(args, input=source.encode(), capture_output=True, check=False)
    said = [line.strip() for line in run.stderr.decode(errors="replace").splitlines() if line.strip()]
    if run.returncode != 0 or not run.stdout:
        last = said[-1] if said else f"exit status {run.returncode}"
        raise ToolError(f"Graphviz could not render the {fmt}: {last}")
    for line in said:
        warnings.warn(_graphviz_note(line, fmt), RenderWarning, stacklevel=2)
    return run.stdout


def _graphviz_note(line: str, fmt: str) -> str:
    """Graphviz's line in the project's words where it is the known one (a bitmap over its size
    limit, which it scales down), else as Graphviz said it."""
    scaled = re.search(r"too large for \S+ bitmaps\. Scaling by ([0-9.]+)", line)
    if scaled is None:
        return f"Graphviz: {line.removeprefix('Warning: ')}"
    percent = float(scaled.group(1)) * 100
    return (
        f"the {fmt} was scaled down to {percent:.0f}% to fit Graphviz's bitmap limit of 32,767 pixels a side: "
        "lower --dpi for this size without scaling, or write svg or pdf"
    )


OPTION_DEFAULTS: dict[str, Any] = {
    "detail": "blocks",
    "blocks": None,
    "rankdir": "LR",
    "labels": "short",
    "legend": True,
    "title": None,
    "dpi": None,
}


def _emitter(fmt: str) -> Callable[[IR, Mapping[str, Any] | None, Mapping[str, Any]], bytes | str]:
    def emit(ir: IR, state: Mapping[str, Any] | None, options: Mapping[str, Any]) -> bytes | str:
        chosen = {name: options.get(name, default) for name, default in OPTION_DEFAULTS.items()}
        source = to_dot(ir, **chosen)
        return source if fmt == "dot" else render(source, fmt)

    emit.__doc__ = f"The ``--to {fmt}`` target."
    return emit


emit_dot = _emitter("dot")
emit_svg = _emitter("svg")
emit_png = _emitter("png")
emit_pdf = _emitter("pdf")
