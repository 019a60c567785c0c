"""IR to Mermaid flowcharts: diagrams that GitHub, GitLab and MkDocs draw inside Markdown.

Mermaid lays out by itself, so only views it draws well are offered: the block view (stages in a
line, each dense block a subgraph with its layer count) and layer views of small blocks, every
dense connection an edge coloured by its source. Mermaid refuses diagrams over 500 edges by
default (``maxEdges``) and is unreadable long before; a larger layer view is refused with what to
do instead, never silently cut.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ..errors import UsageError
from ..ir import IR, Layer
from . import views
from .colours import source_colours
from .views import Labels

MAX_EDGES = 200
"""Most dense connections a Mermaid layer view draws (Mermaid's own limit is 500; readability ends sooner)."""


class ViewTooLargeError(UsageError):
    """A layer view with more connections than a Mermaid flowchart can show readably: the spec is
    valid and nothing is missing, the options asked for too much (exit status 2)."""


def _id(name: str) -> str:
    """A Mermaid node id: letters, digits and underscores only."""
    return "".join(c if c.isalnum() else "_" for c in name)


def _text(text: str) -> str:
    return text.replace('"', "#quot;").replace("\n", "<br/>")


def _header(title: str | None, default: str, rankdir: str) -> list[str]:
    chosen = default if title is None else title
    lines = ["---", f"title: {json.dumps(chosen)}", "---"] if chosen else []  # quoted: titles hold colons
    return [*lines, f"flowchart {rankdir}"]


def blocks_flowchart(ir: IR, labels: Labels, rankdir: str, title: str | None) -> str:
    """The block view: input, stem, each block (a subgraph), transitions, head, prediction."""
    lines = _header(title, views.blocks_title(ir), rankdir)
    previous = None
    for stage in views.stage_views(ir, labels):
        node = _id(stage.name)
        if stage.kind == "block":
            lines.append(f'    {node}[["{_text(stage.caption)}"]]')
        else:
            text = "\n".join(x for x in (stage.label, stage.caption) if x)
            lines.append(f'    {node}("{_text(text)}")')
        if previous is not None:
            lines.append(f"    {previous} --> {node}")
        previous = node
    return "\n".join(lines) + "\n"


def _shown(ir: IR, blocks: list[int] | None) -> list[Layer]:
    numbers = blocks or list(range(1, len(ir.blocks()) + 1))
    keep: set[str] = set()
    for number in numbers:
        members = ir.blocks()[number - 1]
        keep |= {m.name for m in members} | set(ir.inputs(members[0].name))
        keep |= set(ir.graph.successors(members[-1].name))
    return [layer for layer in ir.layers() if layer.name in keep]


def layers_flowchart(ir: IR, blocks: list[int] | None, labels: Labels, rankdir: str, title: str | None) -> str:
    """A layer view: each block a subgraph, every connection among the shown layers an edge."""
    shown = _shown(ir, blocks)
    names = {layer.name for layer in shown}
    edges = [(a, b) for a, b in ir.graph.edges if a in names and b in names]
    if len(edges) > MAX_EDGES:
        raise ViewTooLargeError(
            f"{views.spec_origin(ir)}: the layer view has {len(edges)} connections, too many for a readable Mermaid "
            f"flowchart (at most {MAX_EDGES}): choose fewer or smaller blocks with --blocks, use the block view "
            "(--detail blocks), or draw it with --to svg"
        )
    which = "all blocks" if blocks is None else "block " + ", ".join(map(str, blocks))
    lines = _header(title, f"{ir.info.name}: dense connections ({which})", rankdir)
    lines += _layer_nodes(shown, labels)
    lines += [f"    {_id(a)} --> {_id(b)}" for a, b in edges]
    lines += _edge_colours(ir, edges)
    return "\n".join(lines) + "\n"


def _layer_nodes(shown: list[Layer], labels: Labels) -> list[str]:
    """Node lines; the layers of each block inside a subgraph named after it."""
    lines: list[str] = []
    open_stage: str | None = None
    for layer in shown:
        stage = layer.stage if layer.kind == "dense_layer" else None
        if stage != open_stage:
            lines += ["    end"] if open_stage else []
            lines += [f'    subgraph {stage}["{stage}"]'] if stage else []
            open_stage = stage
        name = {"short": views.short_name(layer), "full": layer.name, "none": " "}[labels]
        lines.append(f'    {_id(layer.name)}["{_text(name)}"]')
    return [*lines, "    end"] if open_stage else lines


def _edge_colours(ir: IR, edges: list[tuple[str, str]]) -> list[str]:
    """``linkStyle`` lines: every dense connection coloured by its source's place in its block."""
    colour: dict[tuple[str, str], str] = {}
    for members in ir.blocks():
        sources = [ir.inputs(members[0].name)[0], *(m.name for m in members)]
        palette = dict(zip(sources, source_colours(len(sources)), strict=True))
        for target in [*members[1:], ir.layer(next(iter(ir.graph.successors(members[-1].name))))]:
            for source in ir.inputs(target.name):
                colour[(source, target.name)] = palette[source]
        colour[(sources[0], members[0].name)] = palette[sources[0]]
    by_colour: dict[str, list[int]] = {}
    for i, edge in enumerate(edges):
        if edge in colour:
            by_colour.setdefault(colour[edge], []).append(i)
    return [f"    linkStyle {','.join(map(str, idx))} stroke:{c}" for c, idx in by_colour.items()]


def emit(ir: IR, state: Mapping[str, Any] | None, options: Mapping[str, Any]) -> str:
    """The ``--to mermaid`` target."""
    labels = options.get("labels", "short")
    rankdir = options.get("rankdir", "LR")
    title = options.get("title")
    if options.get("detail", "blocks") == "layers":
        return layers_flowchart(ir, options.get("blocks"), labels, rankdir, title)
    return blocks_flowchart(ir, labels, rankdir, title)


def markdown_block(chart: str) -> str:
    """``chart`` inside a fenced ``mermaid`` block: how Markdown (GitHub, GitLab, MkDocs) takes a
    Mermaid chart; written when ``-o`` names a ``.md`` or ``.markdown`` file."""
    body = chart if chart.endswith("\n") else chart + "\n"
    return f"```mermaid\n{body}```\n"
