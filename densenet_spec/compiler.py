"""Spec to IR: lower the spec to layers and dense connections, and check the arithmetic.

Lowering follows the paper and torchvision exactly: a dense layer is BN-ReLU-conv1x1
(bottleneck_width * k) - BN-ReLU-conv3x3 (k) on the concatenation of the block input and every
earlier layer's output; a transition is BN-ReLU-conv1x1 (floor(theta * m)) - avgpool 2x2/2; the head
is BN-ReLU-global average pool-linear. Problems that the user can fix name the spec field (and
the layer) at fault; :func:`check_ir` re-checks the invariants every pass must keep.
"""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path
from typing import Literal

from .errors import Problem, SpecError
from .ir import (
    IR,
    Act,
    Conv,
    Dropout,
    Flatten,
    GlobalPool,
    Layer,
    LayerKind,
    Linear,
    Lowered,
    ModelInfo,
    Norm,
    Op,
    Pool,
    Size,
    build_ir,
    check_ir,
    format_size,
)
from .loader import preset_dir
from .schema import FieldPath, Spec, format_path

MAX_DENSE_LAYERS = 10_000
MAX_DENSE_CONNECTIONS = 500_000
MAX_PARAMS = 10**10

FieldProblems = list[tuple[FieldPath, str]]


def compile_spec(spec: Spec, *, strict: bool = False) -> IR:
    """Lower ``spec`` to a checked IR.

    Raises:
        SpecError: the spec cannot be built (too big, inputs too small, a transition keeping no
            maps), or, with ``strict``, it has warnings (a compression that is not exact).
    """
    _raise(spec, _check_counts(spec))
    lowered = _lower(spec, spec.input.hw)  # layer records only: nothing the size of the network
    _raise(spec, _check_params(lowered) or _check_lowered(spec, lowered))
    warnings = _compression_warnings(spec, lowered)
    if strict:
        _raise(spec, warnings)
    problems = (Problem(spec.source.locate(path), format_path(path), msg, "warning") for path, msg in warnings)
    ir = build_ir(_info(spec), lowered, problems)
    broken = check_ir(ir)
    if broken:  # a bug in the compiler, not in the spec
        raise AssertionError("the compiler built an inconsistent graph:\n" + "\n".join(broken))
    return ir


def _raise(spec: Spec, problems: FieldProblems) -> None:
    if problems:
        raise SpecError(Problem(spec.source.locate(path), format_path(path), message) for path, message in problems)


def _info(spec: Spec) -> ModelInfo:
    return ModelInfo(
        name=spec.name,
        description=spec.description,
        source=_origin(spec),
        input_channels=spec.input.channels,
        input_size=spec.input.hw,
        num_classes=spec.num_classes,
    )


def _origin(spec: Spec) -> str:
    """Where the spec came from, the same on every machine for a preset."""
    where = spec.source.locate(())
    if where is None:
        return "<python>"
    path = Path(where.file)
    if path.suffix == ".yaml" and path.resolve().parent == preset_dir().resolve():
        return f"preset {path.stem}"
    return where.file


# ----------------------------------------------------------------------------- lowering


def _lower(spec: Spec, size: Size) -> Lowered:
    """Every layer with the names of the layers it concatenates, in execution order."""
    out: Lowered = []
    previous = _stem(spec, size, out)
    blocks = spec.block_layers
    for b, (layers, k) in enumerate(blocks, start=1):
        entry = out[-1][0]
        channels, size = entry.out_channels, entry.out_size
        sources = [previous]
        for j in range(1, layers + 1):
            path = f"features.denseblock{b}.denselayer{j}"
            layer = _dense_layer(spec, path, channels + (j - 1) * k, k, size, b)
            out.append((layer, list(sources)))
            sources.append(path)
        channels += layers * k
        if b < len(blocks):
            kept = math.floor(_theta(spec) * channels)
            out.append((_transition(f"features.transition{b}", channels, kept, size, b), sources))
            previous = f"features.transition{b}"
        else:
            out.append((Layer("features.norm5", "norm", "head", (_norm("features.norm5", channels, size),)), sources))
            out.append((_classifier(channels, spec.num_classes, size), ["features.norm5"]))
    return out


def _theta(spec: Spec) -> Fraction:
    # The decimal the user wrote, exactly: 0.57 * 100 keeps 57 maps, not float's 56.99999.
    return Fraction(repr(spec.compression))


def _conv(path: str, c_in: int, c_out: int, size: Size, kernel: int, stride: int = 1, padding: int = 0) -> Conv:
    rank = len(size)
    return Conv(
        path=path,
        in_channels=c_in,
        in_size=size,
        out_channels=c_out,
        kernel=(kernel,) * rank,
        stride=(stride,) * rank,
        padding=(padding,) * rank,
    )


def _norm(path: str, channels: int, size: Size) -> Norm:
    return Norm(path=path, in_channels=channels, in_size=size)


def _act(path: str, channels: int, size: Size) -> Act:
    return Act(path=path, in_channels=channels, in_size=size)


def _pool(
    path: str, kind: Literal["max", "avg"], channels: int, size: Size, kernel: int, stride: int, pad: int
) -> Pool:
    rank = len(size)
    return Pool(
        path=path,
        in_channels=channels,
        in_size=size,
        pool=kind,
        kernel=(kernel,) * rank,
        stride=(stride,) * rank,
        padding=(pad,) * rank,
    )


def _stem(spec: Spec, size: Size, out: Lowered) -> str:
    c_in, c_out = spec.input.channels, spec.stem_channels
    chain: list[tuple[LayerKind, Op]]
    if spec.stem.kind == "cifar":
        chain = [("conv", _conv("features.conv0", c_in, c_out, size, 3, 1, 1))]
    else:
        conv0 = _conv("features.conv0", c_in, c_out, size, 7, 2, 3)
        s = conv0.out_size
        chain = [
            ("conv", conv0),
            ("norm", _norm("features.norm0", c_out, s)),
            ("relu", _act("features.relu0", c_out, s)),
            ("pool", _pool("features.pool0", "max", c_out, s, 3, 2, 1)),
        ]
    previous: list[str] = []
    for kind, op in chain:
        out.append((Layer(op.path, kind, "stem", (op,)), previous))
        previous = [op.path]
    return previous[0]


def _dense_layer(spec: Spec, path: str, c_in: int, k: int, size: Size, block: int) -> Layer:
    ops: list[Op] = [_norm(f"{path}.norm1", c_in, size), _act(f"{path}.relu1", c_in, size)]
    if spec.bottleneck_width is None:
        ops.append(_conv(f"{path}.conv1", c_in, k, size, 3, 1, 1))
    else:
        width = spec.bottleneck_width * k
        ops += [
            _conv(f"{path}.conv1", c_in, width, size, 1),
            _norm(f"{path}.norm2", width, size),
            _act(f"{path}.relu2", width, size),
            _conv(f"{path}.conv2", width, k, size, 3, 1, 1),
        ]
    if spec.dropout > 0:
        ops.append(Dropout(path=f"{path}.dropout", in_channels=k, in_size=size, p=spec.dropout))
    return Layer(path, "dense_layer", f"denseblock{block}", tuple(ops), block)


def _transition(path: str, c_in: int, c_out: int, size: Size, block: int) -> Layer:
    conv = _conv(f"{path}.conv", c_in, c_out, size, 1)
    ops = (
        _norm(f"{path}.norm", c_in, size),
        _act(f"{path}.relu", c_in, size),
        conv,
        _pool(f"{path}.pool", "avg", c_out, size, 2, 2, 0),
    )
    return Layer(path, "transition", path.rsplit(".", 1)[-1], ops, block)


def _classifier(c_in: int, num_classes: int, size: Size) -> Layer:
    ones = (1,) * len(size)
    ops = (
        _act("head.relu", c_in, size),
        GlobalPool(path="head.pool", in_channels=c_in, in_size=size),
        Flatten(path="head.flatten", in_channels=c_in, in_size=ones),
        Linear(path="classifier", in_channels=c_in, in_size=ones, out_channels=num_classes),
    )
    return Layer("classifier", "classifier", "head", ops)


# ----------------------------------------------------------------------------- spec checks


def _check_counts(spec: Spec) -> FieldProblems:
    """Refuse a spec with too many layers or connections to lower, from arithmetic alone."""
    blocks = spec.block_layers
    total = sum(n for n, _ in blocks)
    if total > MAX_DENSE_LAYERS:
        return [(("blocks",), f"{total:,} dense layers is too many to build (at most {MAX_DENSE_LAYERS:,})")]
    connections = sum(n * (n + 1) // 2 + n + 1 for n, _ in blocks)
    if connections > MAX_DENSE_CONNECTIONS:
        largest = max(n for n, _ in blocks)
        return [
            (
                ("blocks",),
                f"{connections:,} dense connections is too many to build (at most {MAX_DENSE_CONNECTIONS:,}); "
                f"the largest block has {largest:,} layers; split it into more blocks",
            )
        ]
    return []


def _check_params(lowered: Lowered) -> FieldProblems:
    """Refuse a network too big to build, from the layer records, before any tensor exists."""
    params = sum(layer.params for layer, _ in lowered)
    if params > MAX_PARAMS:
        return [((), f"{params:,} parameters is too many to build (at most {MAX_PARAMS:,})")]
    return []


def _check_lowered(spec: Spec, lowered: Lowered) -> FieldProblems:
    problems: FieldProblems = []
    for layer, _ in lowered:
        if layer.kind == "transition" and layer.out_channels < 1:
            problems.append(
                (
                    ("compression",),
                    f"{layer.name} keeps floor({spec.compression} x {layer.in_channels}) = 0 maps; "
                    "raise compression or growth_rate",
                )
            )
    shrunk = next((layer for layer, _ in lowered if min(layer.out_size) < 1), None)
    if shrunk is not None:
        smallest = _smallest_input(lowered)
        problems.append(
            (
                ("input", "size"),
                f"{format_size(spec.input.hw)} is too small: the feature maps shrink to nothing at {shrunk.name}; "
                f"the smallest input that works is {format_size(smallest)}",
            )
        )
    return problems


def _smallest_input(lowered: Lowered) -> Size:
    """The least input length per axis for which every feature map keeps at least one pixel.

    Walks the windows backwards once: a window of kernel k, stride s and padding p gives at least
    m outputs exactly when its input has at least ``(m - 1) * s + k - 2p`` (and one) positions.
    """
    windows = [op for layer, _ in lowered for op in layer.ops if isinstance(op, Conv | Pool)]
    rank = len(lowered[0][0].in_size)
    need = [1] * rank
    for op in reversed(windows):
        need = [
            max(1, (m - 1) * s + k - 2 * p) for m, k, s, p in zip(need, op.kernel, op.stride, op.padding, strict=True)
        ]
    return tuple(need)


def _compression_warnings(spec: Spec, lowered: Lowered) -> FieldProblems:
    theta = _theta(spec)
    out: FieldProblems = []
    for layer, _ in lowered:
        if layer.kind == "transition" and (theta * layer.in_channels).denominator != 1:
            exact = float(theta * layer.in_channels)
            out.append(
                (
                    ("compression",),
                    f"{layer.name}: {spec.compression} x {layer.in_channels} = {exact:g} maps is not "
                    f"an integer; {layer.out_channels} are kept (floor)",
                )
            )
    return out
