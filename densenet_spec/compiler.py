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

from .errors import Problem, SpecError
from .ir import IR, Layer, ModelInfo, Op, Size, conv, norm, pool, pooled, relu
from .loader import preset_dir
from .schema import FieldPath, Spec, format_path

MAX_DENSE_LAYERS = 10_000
MAX_DENSE_CONNECTIONS = 500_000
MAX_PARAMS = 10**10

Lowered = list[tuple[Layer, list[str]]]
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
    ir = IR(_info(spec))
    for layer, inputs in lowered:
        ir.add_layer(layer, inputs)
    broken = check_ir(ir)
    if broken:  # a bug in the compiler, not in the spec
        raise AssertionError("the compiler built an inconsistent graph:\n" + "\n".join(broken))
    warnings = _compression_warnings(spec, ir)
    if strict:
        _raise(spec, [(path, message) for path, message in warnings])
    ir.warnings = tuple(Problem(spec.source.locate(path), format_path(path), msg, "warning") for path, msg in warnings)
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
            out.append((_transition(f"features.transition{b}", channels, kept, size), sources))
            previous = f"features.transition{b}"
        else:
            out.append((Layer("features.norm5", "norm", "head", (norm("features.norm5", channels, size),)), sources))
            out.append((_classifier(channels, spec.num_classes, size), ["features.norm5"]))
    return out


def _theta(spec: Spec) -> Fraction:
    # The decimal the user wrote, exactly: 0.57 * 100 keeps 57 maps, not float's 56.99999.
    return Fraction(repr(spec.compression))


def _stem(spec: Spec, size: Size, out: Lowered) -> str:
    c_in, c_out = spec.input.channels, spec.stem_channels
    if spec.stem.kind == "cifar":
        chain = [("conv", conv("features.conv0", c_in, c_out, size, 3, 1, 1))]
    else:
        conv0 = conv("features.conv0", c_in, c_out, size, 7, 2, 3)
        s = conv0.out_size
        chain = [
            ("conv", conv0),
            ("norm", norm("features.norm0", c_out, s)),
            ("relu", relu("features.relu0", c_out, s)),
            ("pool", pool("features.pool0", "maxpool", c_out, s, 3, 2, 1)),
        ]
    previous: list[str] = []
    for kind, op in chain:
        out.append((Layer(op.path, kind, "stem", (op,)), previous))  # type: ignore[arg-type]
        previous = [op.path]
    return previous[0]


def _dense_layer(spec: Spec, path: str, c_in: int, k: int, size: Size, block: int) -> Layer:
    ops = [norm(f"{path}.norm1", c_in, size), relu(f"{path}.relu1", c_in, size)]
    if spec.bottleneck_width is None:
        ops.append(conv(f"{path}.conv1", c_in, k, size, 3, 1, 1))
    else:
        width = spec.bottleneck_width * k
        ops += [
            conv(f"{path}.conv1", c_in, width, size, 1),
            norm(f"{path}.norm2", width, size),
            relu(f"{path}.relu2", width, size),
            conv(f"{path}.conv2", width, k, size, 3, 1, 1),
        ]
    if spec.dropout > 0:
        ops.append(Op(f"{path}.dropout", "dropout", k, k, size, p=spec.dropout))
    return Layer(path, "dense_layer", f"denseblock{block}", tuple(ops), block)


def _transition(path: str, c_in: int, c_out: int, size: Size) -> Layer:
    conv_op = conv(f"{path}.conv", c_in, c_out, size, 1)
    ops = (
        norm(f"{path}.norm", c_in, size),
        relu(f"{path}.relu", c_in, size),
        conv_op,
        pool(f"{path}.pool", "avgpool", c_out, size, 2, 2),
    )
    return Layer(path, "transition", path.rsplit(".", 1)[-1], ops)


def _classifier(c_in: int, num_classes: int, size: Size) -> Layer:
    ops = (
        relu("head.relu", c_in, size),
        Op("head.pool", "global_avgpool", c_in, c_in, size),
        Op("head.flatten", "flatten", c_in, c_in, (1, 1)),
        Op("classifier", "linear", c_in, num_classes, (1, 1)),
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
        h, w = spec.input.hw
        smallest = (_smallest_input(spec, 0), _smallest_input(spec, 1))
        problems.append(
            (
                ("input", "size"),
                f"{h}x{w} is too small: the feature maps shrink to nothing at {shrunk.name}; "
                f"the smallest input that works is {smallest[0]}x{smallest[1]}",
            )
        )
    return problems


def _smallest_input(spec: Spec, axis: int) -> int:
    """The least input length along ``axis`` for which every feature map keeps >= 1 pixel."""
    windows = [
        (op.kernel, op.stride, op.padding)
        for layer, _ in _lower(spec, (1, 1))
        if layer.kind in ("conv", "pool", "transition")
        for op in layer.ops
        if op.kind in ("conv", "maxpool", "avgpool")
    ]

    def fits(n: int) -> bool:
        for k, s, p in windows:
            n = pooled(n, k, s, p)
            if n < 1:
                return False
        return True

    high = max(spec.input.hw[axis], 1)
    while not fits(high):
        high *= 2
    low = 0  # fits(low) is False or low == 0
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (low, mid) if fits(mid) else (mid, high)
    return high


def _compression_warnings(spec: Spec, ir: IR) -> FieldProblems:
    theta = _theta(spec)
    out: FieldProblems = []
    for layer in ir.layers():
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


# ----------------------------------------------------------------------------- IR invariants


def check_ir(ir: IR) -> list[str]:
    """Every broken invariant of ``ir``, each naming its layer; empty when the graph is sound.

    The invariants: the channels flowing into a layer sum to its in_channels, in consecutive
    concatenation slots; each edge carries its source's channel count; inside a layer each op
    consumes what the previous one produced; every feature map keeps at least one pixel.
    """
    broken = []
    for layer in ir.layers():
        edges = sorted(ir.graph.in_edges(layer.name, data=True), key=lambda e: e[2]["slot"])
        if edges:
            total = sum(data["channels"] for _, _, data in edges)
            if total != layer.in_channels:
                broken.append(f"{layer.name}: inputs carry {total} channels, the layer takes {layer.in_channels}")
            if [data["slot"] for _, _, data in edges] != list(range(len(edges))):
                broken.append(f"{layer.name}: concatenation slots are not 0..{len(edges) - 1}")
            for source, _, data in edges:
                if data["channels"] != ir.layer(source).out_channels:
                    broken.append(f"{layer.name}: the edge from {source} carries {data['channels']} channels")
        broken += _check_ops(layer)
    return broken


def _check_ops(layer: Layer) -> list[str]:
    broken = []
    for before, after in zip(layer.ops, layer.ops[1:], strict=False):
        if before.out_channels != after.in_channels or before.out_size != after.in_size:
            broken.append(
                f"{after.path}: takes {after.in_channels}x{after.in_size} but {before.path} gives "
                f"{before.out_channels}x{before.out_size}"
            )
    if min(layer.out_size) < 1:
        broken.append(f"{layer.name}: output size {layer.out_size}")
    return broken
