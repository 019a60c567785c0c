"""Connection strengths of a trained network as heat maps (the DenseNet paper's Figure 5).

For each dense block, the pixel at (source s, target l) is the mean absolute weight of target
l's first convolution over the input channels that come from source s: the block input, or layer
s's output. A layer reads the concatenation of its sources in the IR's order (block input first,
then layers 1..l-1), and each source contributes its ``out_channels``, so the channel ranges follow
from the IR alone. The transition after a block (its 1x1 conv) and, after the last block, the
classifier (its linear layer, through the final norm and pooling, which keep the channels in
order) are the last column, as in the paper. Colours are viridis, scaled to each block's
largest value; the exact numbers are in :func:`strengths` and in each cell's tooltip.

Drawn with a Graphviz HTML-like table, so it needs nothing Graphviz does not already provide.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..ir import IR, Conv, Layer, Linear, Op
from . import views
from .colours import scale_colour
from .graphviz import render


@dataclass(frozen=True)
class BlockStrengths:
    """One block's matrix: ``values[t][s]`` for target ``targets[t]`` and source ``sources[s]``;
    ``None`` where the target does not read the source."""

    block: int
    sources: tuple[str, ...]
    targets: tuple[str, ...]
    values: tuple[tuple[float | None, ...], ...]

    @property
    def largest(self) -> float:
        return max((v for row in self.values for v in row if v is not None), default=0.0)


def _weighted_op(ir: IR, layer: Layer) -> Op | None:
    """The first convolution or linear op that reads ``layer``'s concatenated input.

    Follows single successors through layers without one (the final norm), which keep the
    channels in order; ``None`` where nothing weighs them (``num_classes: 0``).
    """
    while True:
        for op in layer.ops:
            if isinstance(op, Conv | Linear):
                return op
        following = list(ir.graph.successors(layer.name))
        if len(following) != 1 or len(ir.inputs(following[0])) != 1:
            return None
        layer = ir.layer(following[0])


def _per_source(ir: IR, target: Layer, op: Op, state: Mapping[str, Any]) -> dict[str, float]:
    """Mean |weight| of ``op`` over each source's channels of ``target``'s input."""
    weight = state[f"{op.path}.weight"].detach().abs().double()
    per_channel = weight.mean(dim=[d for d in range(weight.dim()) if d != 1])
    total = target.in_channels
    repeats = per_channel.shape[0] // total  # a catavgmax head reads the features twice
    out: dict[str, float] = {}
    start = 0
    for name in ir.inputs(target.name):
        width = ir.layer(name).out_channels
        picked = [per_channel[r * total + start : r * total + start + width] for r in range(repeats)]
        out[name] = float(sum(float(p.sum()) for p in picked) / (width * repeats))
        start += width
    return out


def strengths(ir: IR, state: Mapping[str, Any]) -> list[BlockStrengths]:
    """Every block's connection strengths from the weights in ``state``."""
    out = []
    for number, members in enumerate(ir.blocks(), start=1):
        sources = (ir.inputs(members[0].name)[0], *(m.name for m in members))
        consumer = ir.layer(next(iter(ir.graph.successors(members[-1].name))))
        targets = [*members, consumer]
        rows = []
        names = []
        for target in targets:
            op = _weighted_op(ir, target)
            if op is None:
                continue
            found = _per_source(ir, target, op, state)
            rows.append(tuple(found.get(s) for s in sources))
            names.append(op.path.rsplit(".", 1)[0] if target is consumer else target.name)
        out.append(BlockStrengths(number, sources, tuple(names), tuple(rows)))
    return out


# ----------------------------------------------------------------------------- drawing


_LABEL_WIDTH = 18  # the row labels' column: "in", "12", "T1", "FC" at 7 points


def _cell_size(count: int) -> int:
    return max(9, min(18, 360 // max(count, 1)))


def _short(ir: IR, name: str) -> str:
    if name in ir.graph:
        layer = ir.layer(name)
        if layer.kind == "classifier":
            return "FC"
        short = views.short_name(layer)
        return short.removeprefix("L") if layer.kind == "dense_layer" else short
    return name.rsplit(".", 1)[-1]


def _block_table(ir: IR, block: BlockStrengths) -> str:
    size = _cell_size(len(block.sources))
    font = 7 if size >= 12 else 6
    largest = block.largest or 1.0
    cell = f'WIDTH="{size}" HEIGHT="{size}" FIXEDSIZE="TRUE"'
    header = "".join(
        f'<TD {cell}><FONT POINT-SIZE="{font}">{html.escape(_short(ir, t))}</FONT></TD>' for t in block.targets
    )
    label_cell = f'WIDTH="{_LABEL_WIDTH}" HEIGHT="{size}" FIXEDSIZE="TRUE"'
    rows = [f"<TR><TD {label_cell}></TD>{header}</TR>"]
    for s, source in enumerate(block.sources):
        label = "in" if s == 0 else _short(ir, source)
        cells = []
        for t, target in enumerate(block.targets):
            value = block.values[t][s]
            if value is None:
                cells.append(f"<TD {cell}></TD>")
            else:
                tip = html.escape(f"{source} -> {target}: {value:.4g}")
                colour = scale_colour(value / largest)
                cells.append(f'<TD {cell} BGCOLOR="{colour}" TITLE="{tip}" TOOLTIP="{tip}" HREF="#"></TD>')
        name = f'<TD {label_cell} ALIGN="RIGHT"><FONT POINT-SIZE="{font}">{label}</FONT></TD>'
        rows.append(f"<TR>{name}{''.join(cells)}</TR>")
    # Fixed widths everywhere: a wider neighbour (the caption) then leaves the grid's columns alone.
    width = len(block.targets) * (size + 1) + _LABEL_WIDTH + 2
    height = (len(block.sources) + 1) * (size + 1) + 1
    grid = (
        '<TABLE BORDER="0" CELLBORDER="0" CELLSPACING="1" CELLPADDING="0" '
        f'WIDTH="{width}" HEIGHT="{height}" FIXEDSIZE="TRUE">'
        f"{''.join(rows)}</TABLE>"
    )
    caption = f"Dense Block {block.block}: target layer (columns) reads source (rows)"
    # The caption and the colour bar sit outside the grid's table: as rows spanning its columns,
    # being wider than the grid, they made Graphviz widen its columns unevenly.
    return (
        '<TABLE BORDER="0" CELLBORDER="0" CELLSPACING="1" CELLPADDING="0">'
        f'<TR><TD><FONT POINT-SIZE="10">{caption}</FONT></TD></TR>'
        f"<TR><TD>{grid}</TD></TR><TR><TD>{_colour_bar(largest)}</TD></TR></TABLE>"
    )


def _colour_bar(largest: float) -> str:
    stops = "".join(f'<TD WIDTH="12" HEIGHT="8" BGCOLOR="{scale_colour(i / 9)}"></TD>' for i in range(10))
    return (
        '<TABLE BORDER="0" CELLBORDER="0" CELLSPACING="0"><TR>'
        f'<TD><FONT POINT-SIZE="7">0 </FONT></TD>{stops}<TD><FONT POINT-SIZE="7"> {largest:.3g} mean |w|</FONT></TD>'
        "</TR></TABLE>"
    )


def to_dot(ir: IR, state: Mapping[str, Any], title: str | None = None, dpi: float | None = None) -> str:
    """The heat maps of every block, side by side, as DOT (one HTML-like table node)."""
    blocks = "".join(f'<TD VALIGN="TOP">{_block_table(ir, b)}</TD>' for b in strengths(ir, state))
    label = f'<TABLE BORDER="0" CELLSPACING="16"><TR>{blocks}</TR></TABLE>'
    chosen = (
        f"{ir.info.name}: connection strength, mean |w| of each layer's first conv per source"
        if title is None
        else title
    )
    graph = ['fontname="Helvetica"', 'bgcolor="white"']
    if chosen:
        graph += [f'label="{html.escape(chosen, quote=True)}"', 'labelloc="t"', 'fontsize="14"']
    if dpi is not None:
        graph.append(f'dpi="{dpi:g}"')
    return (
        f'digraph "{ir.info.name}.heatmap" {{\n\tgraph [{" ".join(graph)}]\n'
        f'\tnode [shape=plaintext fontname="Helvetica"]\n\theatmap [label=<{label}>]\n}}\n'
    )


def emit(ir: IR, state: Mapping[str, Any] | None, options: Mapping[str, Any]) -> bytes | str:
    """The ``--to heatmap`` target: svg, png, pdf or dot (``format``)."""
    if state is None:
        raise ValueError("the heat map needs weights")
    source = to_dot(ir, state, options.get("title"), options.get("dpi"))
    fmt = options.get("format", "svg")
    return source if fmt == "dot" else render(source, fmt)
