"""IR to Graphviz diagrams of the dense connections.

Two levels of detail. ``layers``: every layer is a node and every IR edge is drawn, the layers of
a block in a cluster, and all edges leaving one layer share a colour so its fan-out can be
followed. ``blocks``: one node per stage (stem, each block, each transition, head). The DOT text
is deterministic; svg, png and pdf are rendered by Graphviz's ``dot`` program.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import graphviz

from ..errors import ToolError
from ..ir import IR, Layer, format_size
from ..summary import Stage, stages

# Colour-blind-friendly, distinguishable on white (Okabe-Ito, then Tol's bright).
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
FONT = "Helvetica"
NEWLINE = "\\n"  # DOT's escape for a centred line break, kept as such in the DOT text
FILL = {"stem": "#F2F2F2", "dense_layer": "#FFFFFF", "block": "#FFFFFF", "transition": "#FFF4D6", "head": "#E8F1FA"}


def _graph(ir: IR, rankdir: str, title: str) -> graphviz.Digraph:
    dot = graphviz.Digraph(ir.info.name)
    dot.attr(
        rankdir=rankdir,
        label=title,
        labelloc="t",
        fontname=FONT,
        fontsize="16",
        nodesep="0.25",
        ranksep="0.35",
        newrank="true",
    )
    dot.attr("node", shape="box", style="rounded,filled", fontname=FONT, fontsize="10", margin="0.12,0.06")
    dot.attr("edge", arrowsize="0.5", penwidth="0.9")
    return dot


def _layer_label(layer: Layer) -> str:
    channels = f"{layer.in_channels} -> {layer.out_channels} ch"
    return f"{layer.name}{NEWLINE}{channels}, {format_size(layer.out_size)}"


def _fill(layer: Layer) -> str:
    if layer.stage == "stem":
        return FILL["stem"]
    if layer.stage == "head":
        return FILL["head"]
    return FILL.get(layer.kind, "#FFFFFF")


def _layer_nodes(ir: IR, blocks: list[int] | None) -> list[str]:
    """The layers drawn: everything, or the chosen blocks with the layers entering and leaving them."""
    names = list(ir.graph.nodes)
    if blocks is None:
        return names
    keep: set[str] = set()
    for number in blocks:
        members = [layer.name for layer in ir.blocks()[number - 1]]
        keep.update(members)
        for member in members:
            keep.update(ir.graph.predecessors(member))
            keep.update(ir.graph.successors(member))
    return [name for name in names if name in keep]


def layers_dot(ir: IR, blocks: list[int] | None = None, rankdir: str = "TB") -> graphviz.Digraph:
    shown = _layer_nodes(ir, blocks)
    chosen = "all blocks" if blocks is None else "block " + ", ".join(map(str, blocks))
    dot = _graph(ir, rankdir, f"{ir.info.name}: dense connections ({chosen})")
    colour = {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(shown)}
    clusters: dict[str, graphviz.Digraph] = {}
    for name in shown:
        layer = ir.layer(name)
        target = dot
        if layer.kind == "dense_layer":
            if layer.stage not in clusters:
                clusters[layer.stage] = graphviz.Digraph(f"cluster_{layer.stage}")
            target = clusters[layer.stage]
        target.node(name, _layer_label(layer), fillcolor=_fill(layer), color=colour[name], group="main")
    members_of = {layers[0].stage: layers for layers in ir.blocks()}
    for stage, cluster in clusters.items():
        members = members_of[stage]
        growth = members[0].out_channels
        cluster.attr(
            label=f"{stage}: {len(members)} layers, k={growth}",
            style="rounded,dashed",
            color="#999999",
            fontname=FONT,
            fontsize="12",
        )
        dot.subgraph(cluster)
    # Consecutive layers pull hard on each other and share a group, so the layers form one column
    # and the longer dense connections arc around it instead of weaving through it.
    position = {name: i for i, name in enumerate(shown)}
    for source, target in ir.graph.edges:
        if source in position and target in position:
            weight = "50" if position[target] == position[source] + 1 else "1"
            tooltip = f"{source} -> {target}: {ir.layer(source).out_channels} ch"
            dot.edge(source, target, color=colour[source], weight=weight, tooltip=tooltip)
    return dot


def _stage_label(stage: Stage) -> str:
    lines = [stage.name, stage.layers]
    if stage.dense_layers:
        growth = (stage.out_channels - stage.in_channels) // stage.dense_layers
        lines[1] = f"{stage.dense_layers} layers, k={growth}"
    lines.append(f"{stage.in_channels} -> {stage.out_channels} ch, {format_size(stage.output_size)}")
    return NEWLINE.join(lines)


def blocks_dot(ir: IR, rankdir: str = "TB") -> graphviz.Digraph:
    title = f"{ir.info.name}: {ir.params:,} params, {ir.macs / 1e9:.3f} GMACs"
    dot = _graph(ir, rankdir, title)
    previous = None
    for stage in stages(ir):
        fill = FILL.get(stage.kind, "#FFFFFF")
        dot.node(stage.name, _stage_label(stage), fillcolor=fill, penwidth="1.5" if stage.dense_layers else "1")
        if previous is not None:
            dot.edge(previous, stage.name)
        previous = stage.name
    return dot


def to_dot(ir: IR, *, detail: str = "blocks", blocks: list[int] | None = None, rankdir: str = "TB") -> str:
    """The diagram as DOT text."""
    graph = layers_dot(ir, blocks, rankdir) if detail == "layers" else blocks_dot(ir, rankdir)
    return str(graph.source)


def render(source: str, fmt: str) -> bytes:
    """Render DOT text with Graphviz's ``dot``; ToolError when it is not installed."""
    try:
        data: bytes = graphviz.Source(source).pipe(format=fmt)
    except graphviz.ExecutableNotFound:
        raise ToolError(
            f"rendering {fmt} needs Graphviz's `dot` program, which is not installed: "
            "apt-get install graphviz (Debian, Ubuntu), brew install graphviz (macOS), "
            "or write DOT with --to dot"
        ) from None
    return data


def _emitter(fmt: str) -> Callable[[IR, Mapping[str, Any] | None, Mapping[str, Any]], bytes | str]:
    def emit(ir: IR, state: Mapping[str, Any] | None, options: Mapping[str, Any]) -> bytes | str:
        source = to_dot(
            ir,
            detail=options.get("detail", "blocks"),
            blocks=options.get("blocks"),
            rankdir=options.get("rankdir", "TB"),
        )
        return source if fmt == "dot" else render(source, fmt)

    emit.__doc__ = f"The ``--to {fmt}`` target."
    return emit


emit_dot = _emitter("dot")
emit_svg = _emitter("svg")
emit_png = _emitter("png")
emit_pdf = _emitter("pdf")
