"""What the diagrams say, whatever draws them (Graphviz, Mermaid): names, stage texts, legends.

Graphviz and Mermaid draw the same views, so the words are decided once, here: a layer's short
name (``L3``, ``T1``), a stage's label and the caption under it, the titles, the legend lines.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from enum import Enum
from typing import Literal

from ..ir import IR, Layer, format_size
from ..summary import Stage, format_macs, stages

Labels = Literal["short", "full", "none"]


class Detail(str, Enum):
    """A diagram's view: a node per stage, or per layer."""

    blocks = "blocks"
    layers = "layers"


class RankDir(str, Enum):
    """Which way a diagram runs: left to right, or top to bottom."""

    LR = "LR"
    TB = "TB"


class LabelStyle(str, Enum):
    """How layers are named: ``L3`` with a legend, module paths, or not at all."""

    short = "short"
    full = "full"
    none = "none"


DPI_RANGE = (10, 2400)
"""The png resolutions a diagram takes (Graphviz's default is 96)."""


def short_name(layer: Layer) -> str:
    """``L3`` for a dense layer, ``T1`` for a transition, else the module's own name (``conv0``)."""
    last = layer.name.rsplit(".", 1)[-1]
    if layer.kind == "dense_layer":
        return "L" + last.removeprefix("denselayer")
    if layer.kind == "transition":
        return "T" + last.removeprefix("transition")
    return last


def count(number: int, noun: str) -> str:
    """``1 layer``, ``6 layers``: a count with its noun in the right number."""
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def span(prefix: str, last: int) -> str:
    """``L1..L6`` for the names ``prefix`` 1 to ``last``; one name, ``L1``, when there is only one
    (a legend reading ``L1..L1`` or ``denselayer1..1`` looks like a mistake)."""
    if last == 1:
        return f"{prefix}1"
    if "." in prefix:  # a module path: the prefix once, ``features.denseblock2.denselayer1..12``
        return f"{prefix}1..{last}"
    return f"{prefix}1..{prefix}{last}"


def spec_origin(ir: IR) -> str:
    """What a message about ``ir`` starts with: the spec file, or the preset's or network's name."""
    source = ir.info.source
    if source.startswith("preset "):
        return source.removeprefix("preset ")
    return ir.info.name if source.startswith("<") else source


def stage_short_name(stage: Stage) -> str:
    """``B2`` for ``denseblock2``, ``T1`` for ``transition1``; ``stem`` and ``head`` as they are."""
    if stage.name.startswith("denseblock"):
        return "B" + stage.name.removeprefix("denseblock")
    if stage.name.startswith("transition"):
        return "T" + stage.name.removeprefix("transition")
    return stage.name


def stage_full_name(stage: Stage) -> str:
    """The module path of a block or transition (``features.denseblock2``); the stage name otherwise."""
    return f"features.{stage.name}" if stage.kind in ("block", "transition") else stage.name


@dataclass(frozen=True)
class StageView:
    """A stage as the block view draws it: ``label`` in its box, ``caption`` under it."""

    name: str
    kind: Literal["io", "stem", "block", "transition", "head"]
    label: str
    caption: str
    layers: int = 0  # a block's dense layers: the motif draws as many, up to its usual three


def stage_views(ir: IR, labels: Labels) -> list[StageView]:
    """Input, every stage, and the prediction, in order (the paper's Figure 2)."""
    channels, size = ir.info.input_channels, format_size(ir.info.input_size)
    out: list[StageView] = [StageView("input", "io", "input" if labels != "none" else "", f"{channels} ch, {size}")]
    for stage in stages(ir):
        name = {"short": stage_short_name(stage), "full": stage_full_name(stage), "none": ""}[labels]
        where = f"{stage.out_channels} ch, {format_size(stage.output_size)}"
        if stage.kind == "block":
            growth = (stage.out_channels - stage.in_channels) // stage.dense_layers
            layers = count(stage.dense_layers, "layer")
            caption = "\n".join(x for x in (name, f"{layers}, k={growth}", where) if x)
            out.append(StageView(stage.name, "block", "", caption, stage.dense_layers))
        else:
            ops = stage.layers.split(", ")
            label = "\n".join([name, *ops] if name else ops)
            out.append(StageView(stage.name, stage.kind, label, where))
    classes = ir.info.num_classes
    what = f"{classes} classes" if classes else f"{ir.output.out_channels} features"
    out.append(StageView("prediction", "io", "prediction" if labels != "none" else "", what))
    return out


TITLE_MAX = 300
"""The longest ``--title``: one line over the drawing; a longer one is wider than any diagram (and
Graphviz stops reading a quoted string at 16,384 bytes)."""


def title_problem(title: str | None, name: str = "the title") -> str | None:
    """What is wrong with a user's diagram title, or None: control characters (an SVG holding them
    is not well-formed XML, and a terminal's escape codes are no title) and titles over
    :data:`TITLE_MAX` characters. Messages call it ``name`` (``--title`` on the command line)."""
    if title is None:
        return None
    bad = sorted({f"U+{ord(c):04X}" for c in title if unicodedata.category(c) == "Cc"})
    if bad:
        return f"{name} holds control characters ({', '.join(bad[:5])}); write it as plain text on one line"
    if len(title) > TITLE_MAX:
        return f"{name} is {len(title):,} characters; at most {TITLE_MAX} fit over a diagram"
    return None


def blocks_title(ir: IR) -> str:
    return f"{ir.info.name}: {ir.params:,} params, {format_macs(ir.macs)}"


def blocks_legend(ir: IR, labels: Labels) -> list[tuple[str, str]]:
    """Legend lines ``(key, meaning)`` of the block view."""
    lines: list[tuple[str, str]] = []
    if labels == "short":
        blocks = len(ir.blocks())
        what = "dense blocks" if blocks > 1 else "dense block"
        lines.append((span("B", blocks), f"{what}: {span('features.denseblock', blocks)}"))
        if blocks > 1:
            what = "transitions" if blocks > 2 else "transition"
            lines.append((span("T", blocks - 1), f"{what}: {span('features.transition', blocks - 1)}"))
    lines.append(("motif", "each layer reads every earlier output of its block (sizes: out channels, size)"))
    return lines
