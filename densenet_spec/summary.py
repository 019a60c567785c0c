"""Costs per stage, shaped like the paper's Table 1: what the network is and what it costs.

``params`` counts every learnable parameter (BN weights and biases included, running statistics
excluded); ``macs`` counts the multiply-accumulates of convolutions and the linear layer at the
spec's input size; ``flops`` is ``2 * macs``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Literal

from .ir import IR, Conv, GlobalPool, Layer, Linear, Op, Pool, Shape, format_size

StageKind = Literal["stem", "block", "transition", "head"]


@dataclass(frozen=True)
class Stage:
    name: str
    kind: StageKind
    layers: str
    dense_layers: int
    in_channels: int
    out_channels: int
    output_size: Shape
    params: int
    macs: int


def stages(ir: IR) -> list[Stage]:
    return [_stage(name, layers) for name, layers in ir.stages().items()]


def _stage_kind(layers: list[Layer]) -> StageKind:
    kinds = {layer.kind for layer in layers}
    if "dense_layer" in kinds:
        return "block"
    if "transition" in kinds:
        return "transition"
    return "head" if "classifier" in kinds else "stem"


def _stage(name: str, layers: list[Layer]) -> Stage:
    dense = [layer for layer in layers if layer.kind == "dense_layer"]
    if dense:
        what = f"{len(dense)} x [{', '.join(describe(op) for op in dense[0].ops if isinstance(op, Conv))}]"
    else:
        what = ", ".join(describe(op) for layer in layers for op in layer.ops if describe(op))
    return Stage(
        name=name,
        kind=_stage_kind(layers),
        layers=what,
        dense_layers=len(dense),
        in_channels=layers[0].in_channels,
        out_channels=layers[0].in_channels + sum(layer.out_channels for layer in dense)
        if dense
        else layers[-1].out_channels,
        output_size=layers[-1].out_size,
        params=sum(layer.params for layer in layers),
        macs=sum(layer.macs for layer in layers),
    )


def _stride(op: Conv | Pool) -> str:
    if all(n == 1 for n in op.stride):
        return ""
    return f"/{op.stride[0]}" if len(set(op.stride)) == 1 else f"/{format_size(op.stride)}"


DESCRIBE: dict[str, Callable[[Any], str]] = {
    Conv.kind: lambda op: f"{format_size(op.kernel)} conv{_stride(op)}",
    Pool.kind: lambda op: f"{format_size(op.kernel)} {op.pool} pool{_stride(op)}",
    GlobalPool.kind: lambda op: f"global {op.pool} pool",
    Linear.kind: lambda op: f"{op.out_channels}-d linear",
}
"""Op kind to its words in the summary's "layers" column; kinds not listed are not mentioned."""


def describe(op: Op) -> str:
    """The op as the paper's Table 1 names it (``3x3 conv``), or empty for element-wise ops."""
    words = DESCRIBE.get(op.kind)
    return words(op) if words is not None else ""


def summary_json(ir: IR) -> dict[str, Any]:
    """The ``summary --format json`` object."""
    return {
        **ir.totals_json(),
        "stages": [_stage_json(s) for s in stages(ir)],
    }


def _stage_json(stage: Stage) -> dict[str, Any]:
    data = asdict(stage)
    del data["kind"]  # the name says it; kept out so that the JSON of v1 specs stays as it was
    return data | {"output_size": list(stage.output_size)}


HEADERS = ("stage", "output size", "layers", "channels", "params", "MACs")


def stage_rows(ir: IR) -> list[tuple[str, ...]]:
    """Table rows (the header is :data:`HEADERS`), then a totals row."""
    rows: list[tuple[str, ...]] = [
        (
            s.name,
            format_size(s.output_size),
            s.layers,
            f"{s.in_channels} -> {s.out_channels}",
            f"{s.params:,}",
            f"{s.macs:,}",
        )
        for s in stages(ir)
    ]
    rows.append(("total", "", "", "", f"{ir.params:,}", f"{ir.macs:,}"))
    return rows


def summary_markdown(ir: IR) -> str:
    lines = [f"# {ir.info.name}", ""]
    if ir.info.description:
        lines += [ir.info.description, ""]
    lines += [
        "| " + " | ".join(HEADERS) + " |",
        "|" + "---|" * len(HEADERS),
    ]
    lines += ["| " + " | ".join(row) + " |" for row in stage_rows(ir)]
    lines += ["", f"params {ir.params:,}; MACs {ir.macs:,} ({ir.macs / 1e9:.3f} G); FLOPs = 2 x MACs", ""]
    return "\n".join(lines)


def presets_markdown(irs: list[IR]) -> str:
    """The presets as a Markdown table (``presets --format markdown`` and the generated docs)."""
    lines = ["| preset | input | params | GMACs | description |", "|---|---|---:|---:|---|"]
    for ir in irs:
        size = format_size(ir.info.input_size)
        lines.append(f"| {ir.info.name} | {size} | {ir.params:,} | {ir.macs / 1e9:.3f} | {ir.info.description} |")
    return "\n".join(lines)
