"""Costs per stage, shaped like the paper's Table 1: what the network is and what it costs.

``params`` counts every learnable parameter (BN weights and biases included, running statistics
excluded); ``macs`` counts the multiply-accumulates of convolutions and the linear layer at the
spec's input size; ``flops`` is ``2 * macs``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Literal

from .ir import IR, Blur, Conv, GlobalPool, Layer, Linear, Op, Pool, Shape, format_size

StageKind = Literal["stem", "block", "transition", "head"]

EXACT_DIGITS = 30
"""Counts of up to this many digits are printed in full; longer ones as ``about 1.2e160``."""


def format_count(n: int) -> str:
    """``n`` with thousands separators, or ``about 1.2e160`` when it has more than EXACT_DIGITS digits.

    Why not ``f"{n:,}"`` alone: an input size of 10**160 gives a MAC count that no float holds
    (``n / 1e9`` raises OverflowError) and whose digits nobody reads; past 4,300 digits Python
    refuses to convert it to text at all. The estimate uses only integer arithmetic and
    ``math.log10`` of the int (exact in magnitude for ints of any size), never ``float(n)``.
    """
    if abs(n) < 10**EXACT_DIGITS:
        return f"{n:,}"
    return "about " + _scientific(n)


def format_macs(macs: int) -> str:
    """MACs with a unit that shows them: ``2.834 GMACs``; a small network's ``0.389 MMACs`` or
    ``2,304 MACs`` (it read ``0.000 GMACs``)."""
    if abs(macs) >= 10**7:
        return f"{format_gmacs(macs)} GMACs"
    if abs(macs) >= 10**4:
        return f"{macs / 1e6:,.3f} MMACs"
    return f"{macs:,} MACs"


def format_gmacs(macs: int) -> str:
    """MACs in billions with three decimals (``2.834``), or ``about 7.6e151`` past 10**15 G.

    A float keeps about 16 significant digits, so beyond 10**15 G the decimals would be noise.
    """
    if abs(macs) < 10 ** (15 + 9):
        return f"{macs / 1e9:,.3f}"
    return "about " + _scientific(macs, shift=9)


def _scientific(n: int, shift: int = 0) -> str:
    """``n / 10**shift`` as ``1.2e160`` (two significant digits), from the int's logarithm."""
    sign = "-" if n < 0 else ""
    exponent_f = math.log10(abs(n)) - shift
    exponent = math.floor(exponent_f)
    mantissa = round(10 ** (exponent_f - exponent), 1)
    if mantissa >= 10:  # 9.96 rounds up to the next power of ten
        mantissa, exponent = mantissa / 10, exponent + 1
    return f"{sign}{mantissa:.1f}e{exponent}"


def format_plain(n: int) -> str:
    """``n`` without separators (channels, sizes), or ``about 1.0e95`` when longer than EXACT_DIGITS digits."""
    return str(n) if abs(n) < 10**EXACT_DIGITS else format_count(n)


def format_dims(size: Shape) -> str:
    """A size as ``56x56`` (as :func:`~densenet_spec.ir.format_size`), long axes as ``~1.0e95``."""
    return "x".join(str(n) if abs(n) < 10**EXACT_DIGITS else "~" + _scientific(n) for n in size)


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
    growth_rate: int | None = None
    """k of a dense block: the maps each of its layers adds; None for other stages."""


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
        growth_rate=dense[0].out_channels if dense else None,
    )


def _window(kernel: Shape) -> str:
    """``3x3``, ``3x3x3``; in 1-D ``3-tap``, since a bare ``3 conv`` reads as a count."""
    return f"{kernel[0]}-tap" if len(kernel) == 1 else format_size(kernel)


def _stride(op: Conv | Pool | Blur) -> str:
    if all(n == 1 for n in op.stride):
        return ""
    return f"/{op.stride[0]}" if len(set(op.stride)) == 1 else f"/{format_size(op.stride)}"


DESCRIBE: dict[str, Callable[[Any], str]] = {
    Conv.kind: lambda op: f"{_window(op.kernel)} conv{_stride(op)}",
    Pool.kind: lambda op: f"{_window(op.kernel)} {op.pool} pool{_stride(op)}",
    Blur.kind: lambda op: f"{_window(op.kernel)} blur pool{_stride(op)}",
    GlobalPool.kind: lambda op: f"global {op.pool} pool",
    Linear.kind: lambda op: f"{op.out_channels}-d linear",
}
"""Op kind to its words in the summary's "layers" column; kinds not listed are not mentioned."""


def describe(op: Op) -> str:
    """The op as the paper's Table 1 names it (``3x3 conv``), or empty for element-wise ops."""
    words = DESCRIBE.get(op.kind)
    return words(op) if words is not None else ""


def summary_json(ir: IR, unoptimized: IR | None = None) -> dict[str, Any]:
    """The ``summary --format json`` object.

    With ``unoptimized`` (``ir`` is its optimised form, ``summary --optimize``) the object describes
    ``ir`` and adds what the table shows: each stage's ``unoptimized`` MACs and the share ``saved``,
    and the whole network's ``unoptimized`` params and MACs and the share ``saved``.
    """
    data = {
        **ir.totals_json(),
        "stages": [_stage_json(s) for s in stages(ir)],
    }
    if unoptimized is not None:
        for stage, before in zip(data["stages"], stages(unoptimized), strict=True):
            stage["unoptimized"] = {"macs": before.macs}
            stage["saved"] = saved_share(before.macs, stage["macs"])
        data["unoptimized"] = {"params": unoptimized.params, "macs": unoptimized.macs}
        data["saved"] = saved_share(unoptimized.macs, ir.macs)
    return data


def saved_share(before: int, after: int) -> float | None:
    """The share of ``before``'s MACs that the optimised network does not do; None for no MACs."""
    # int / int is exact-rounded at any size (never float(int)), so this holds for huge counts
    return 1 - after / before if before else None


def _saved_text(before: int, after: int) -> str:
    share = saved_share(before, after)
    return "" if share is None else f"{share:.1%}"


def _stage_json(stage: Stage) -> dict[str, Any]:
    """A stage as JSON; counts stay exact ints (JSON has no size limit for them)."""
    data = asdict(stage)
    del data["kind"]  # the name says it; kept out so that the JSON of v1 specs stays as it was
    if stage.growth_rate is None:
        del data["growth_rate"]  # only blocks have one; other stages keep the keys they always had
    return data | {"output_size": list(stage.output_size)}


HEADERS = ("stage", "output size", "layers", "channels", "params", "MACs")
OPTIMIZED_HEADERS = (*HEADERS, "unoptimized MACs", "saved")
"""The columns of ``summary --optimize``: the optimised network's, then the plain one's MACs and the share saved."""


def headers(optimized: bool = False) -> tuple[str, ...]:
    return OPTIMIZED_HEADERS if optimized else HEADERS


def stage_rows(ir: IR, unoptimized: IR | None = None) -> list[tuple[str, ...]]:
    """Table rows (the header is :func:`headers`), then a totals row.

    With ``unoptimized`` (``ir`` is its optimised form), each row ends with the plain network's
    MACs and the share of them saved.
    """
    rows: list[tuple[str, ...]] = [
        (
            s.name,
            format_dims(s.output_size),
            _layers_text(s),
            f"{format_plain(s.in_channels)} -> {format_plain(s.out_channels)}",
            format_count(s.params),
            format_count(s.macs),
        )
        for s in stages(ir)
    ]
    rows.append(("total", "", "", "", format_count(ir.params), format_count(ir.macs)))
    if unoptimized is None:
        return rows
    before = [s.macs for s in stages(unoptimized)] + [unoptimized.macs]
    after = [s.macs for s in stages(ir)] + [ir.macs]
    return [(*row, format_count(b), _saved_text(b, a)) for row, b, a in zip(rows, before, after, strict=True)]


def optimized_note(ir: IR, unoptimized: IR) -> str:
    """The line under ``summary --optimize``: the passes, the plain network's totals, the saving."""
    passes = ", ".join(ir.info.passes) or "no pass"
    saved = _saved_text(unoptimized.macs, ir.macs)
    return (
        f"optimized by {passes}; unoptimized: params {format_count(unoptimized.params)}, "
        f"MACs {format_count(unoptimized.macs)}" + (f"; {saved} of the MACs saved" if saved else "")
    )


def _layers_text(stage: Stage) -> str:
    """The "layers" column: the ops, and for a dense block its growth rate (blocks may differ)."""
    if stage.growth_rate is None:
        return stage.layers
    return f"{stage.layers}, k={format_plain(stage.growth_rate)}"


def summary_markdown(ir: IR, unoptimized: IR | None = None) -> str:
    """The ``summary --format markdown`` page; with ``unoptimized``, as :func:`stage_rows` says."""
    lines = [f"# {ir.info.name}", ""]
    if ir.info.description:
        lines += [ir.info.description, ""]
    columns = headers(unoptimized is not None)
    lines += [
        "| " + " | ".join(columns) + " |",
        "|" + "---|" * len(columns),
    ]
    lines += ["| " + " | ".join(row) + " |" for row in stage_rows(ir, unoptimized)]
    gmacs = format_gmacs(ir.macs)
    lines += ["", f"params {format_count(ir.params)}; MACs {format_count(ir.macs)} ({gmacs} G); FLOPs = 2 x MACs"]
    if unoptimized is not None:
        lines += ["", optimized_note(ir, unoptimized)]
    return "\n".join([*lines, ""])


def presets_markdown(irs: list[IR]) -> str:
    """The presets as a Markdown table (``presets --format markdown`` and the generated docs)."""
    lines = ["| preset | input | params | GMACs | description |", "|---|---|---:|---:|---|"]
    for ir in irs:
        size = format_dims(ir.info.input_size)
        params, gmacs = format_count(ir.params), format_gmacs(ir.macs)
        lines.append(f"| {ir.info.name} | {size} | {params} | {gmacs} | {ir.info.description} |")
    return "\n".join(lines)
