"""Costs per stage, shaped like the paper's Table 1: what the network is and what it costs.

``params`` counts every learnable parameter (BN weights and biases included, running statistics
excluded); ``macs`` counts the multiply-accumulates of convolutions and the linear layer at the
spec's input size; ``flops`` is ``2 * macs``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from .ir import IR, Layer, Op


@dataclass(frozen=True)
class Stage:
    name: str
    layers: str
    dense_layers: int
    in_channels: int
    out_channels: int
    output_size: tuple[int, int]
    params: int
    macs: int


def stages(ir: IR) -> list[Stage]:
    return [_stage(name, layers) for name, layers in ir.stages().items()]


def _stage(name: str, layers: list[Layer]) -> Stage:
    dense = [layer for layer in layers if layer.kind == "dense_layer"]
    if dense:
        what = f"{len(dense)} x [{', '.join(_describe(op) for op in dense[0].ops if op.kind == 'conv')}]"
    else:
        what = ", ".join(_describe(op) for layer in layers for op in layer.ops if _describe(op))
    return Stage(
        name=name,
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


def _describe(op: Op) -> str:
    stride = f"/{op.stride}" if op.stride > 1 else ""
    if op.kind == "conv":
        return f"{op.kernel}x{op.kernel} conv{stride}"
    if op.kind in ("maxpool", "avgpool"):
        return f"{op.kernel}x{op.kernel} {op.kind[:3]} pool{stride}"
    if op.kind == "global_avgpool":
        return "global avg pool"
    if op.kind == "linear":
        return f"{op.out_channels}-d linear"
    return ""


def summary_json(ir: IR) -> dict[str, Any]:
    """The ``summary --format json`` object."""
    return {
        **ir.totals_json(),
        "stages": [{**asdict(s), "output_size": list(s.output_size)} for s in stages(ir)],
    }


HEADERS = ("stage", "output size", "layers", "channels", "params", "MACs")


def stage_rows(ir: IR) -> list[tuple[str, ...]]:
    """Table rows (the header is :data:`HEADERS`), then a totals row."""
    rows: list[tuple[str, ...]] = [
        (
            s.name,
            f"{s.output_size[0]}x{s.output_size[1]}",
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
