"""Spec to IR: lower the spec to layers and dense connections, and check the arithmetic.

Lowering follows the paper and torchvision exactly: a dense layer is BN-ReLU-conv1x1
(bottleneck_width * k) - BN-ReLU-conv3x3 (k) on the concatenation of the block input and every
earlier layer's output; a transition is BN-ReLU-conv1x1 (floor(theta * m)) - avgpool 2x2/2; the head
is BN-ReLU-global average pool-linear. Problems that the user can fix name the spec field (and
the layer) at fault; :func:`check_ir` re-checks the invariants every pass must keep.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from fractions import Fraction
from pathlib import Path
from typing import Literal

from .errors import Problem, Severity, SpecError
from .ir import (
    IR,
    Act,
    Blur,
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
from .schema import BlockConfig, BlockSpec, FieldPath, Spec, format_path
from .spec_messages import inherited_note
from .summary import format_count

MAX_DENSE_LAYERS = 10_000
MAX_DENSE_CONNECTIONS = 500_000
MAX_PARAMS = 10**10

FieldProblems = list[tuple[FieldPath, str] | tuple[FieldPath, str, FieldPath]]
"""(field, message), or (field, message, where) for a problem about a field that the spec leaves
to its default, placed at the value that made it matter (the default compression at a block)."""


def compile_spec(spec: Spec, *, strict: bool = False) -> IR:
    """Lower ``spec`` to a checked IR.

    Raises:
        SpecError: the spec cannot be built (too big, inputs too small, a transition keeping no
            maps), or, with ``strict``, it has warnings (a compression that is not exact).
        TypeError: ``spec`` is not a Spec (a preset name or path: ``load_spec`` it first).
    """
    if not isinstance(spec, Spec):
        if isinstance(spec, Mapping):
            how = "as_ir(fields) compiles a mapping of a spec's fields"
        else:
            how = f"compile_spec(load_spec({spec!r})) reads a preset or a file first, or as_ir({spec!r}) does both"
        raise TypeError(f"compile_spec takes a Spec, not {type(spec).__name__}: {how}")
    _raise(spec, _check_counts(spec))
    lowered = _lower(spec, spec.input.shape)  # layer records only: nothing the size of the network
    # A refused spec gets no warnings: they are about the widths of a network that builds, and the
    # refusal names the width at fault (a compression that floors included).
    _raise(spec, _check_params(spec, lowered) or _check_lowered(spec, lowered))
    warnings = _stem_warnings(spec) + _compression_warnings(spec, lowered) + _last_block_warnings(spec)
    if strict:
        _raise(spec, warnings)
    ir = build_ir(_info(spec), lowered, _located(spec, warnings, "warning"))
    broken = check_ir(ir)
    if broken:  # a bug in the compiler, not in the spec
        raise AssertionError("the compiler built an inconsistent graph:\n" + "\n".join(broken))
    return ir


def _raise(spec: Spec, errors: FieldProblems) -> None:
    if errors:
        raise SpecError(_located(spec, errors, "error"))


def _located(spec: Spec, problems: FieldProblems, severity: Severity) -> list[Problem]:
    """``problems`` as :class:`Problem` s, each at the place its field was written; one placed in a
    parent file names the spec that extends it, as the schema's problems do (the child's values
    often cause it: its growth rate makes the parent's groups fail)."""
    out = []
    for path, message, *at in problems:
        where = spec.source.locate(at[0] if at else path)
        out.append(Problem(where, format_path(path), message + inherited_note(where, spec.source), severity))
    return out


def _info(spec: Spec) -> ModelInfo:
    return ModelInfo(
        name=spec.name,
        description=spec.description,
        source=_origin(spec),
        input_channels=spec.input.channels,
        input_size=spec.input.shape,
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
    ops = _Ops(spec)
    out: Lowered = []
    previous = _stem(spec, ops, size, out)
    blocks = spec.block_configs
    for b, block in enumerate(blocks, start=1):
        entry = out[-1][0]
        channels, size = entry.out_channels, entry.out_size
        sources = [previous]
        for j in range(1, block.layers + 1):
            path = f"features.denseblock{b}.denselayer{j}"
            layer = _dense_layer(ops, block, path, channels + (j - 1) * block.growth_rate, size, b)
            out.append((layer, list(sources)))
            sources.append(path)
        channels += block.layers * block.growth_rate
        if b < len(blocks):
            kept = math.floor(_theta(block.compression) * channels)
            out.append((_transition(spec, ops, f"features.transition{b}", channels, kept, size, b), sources))
            previous = f"features.transition{b}"
        else:
            norm5 = ops.norm("features.norm5", channels, size)
            if norm5 is not None:
                out.append((Layer("features.norm5", "norm", "head", (norm5,)), sources))
                sources = ["features.norm5"]
            out.append((_classifier(spec, ops, channels, size), sources))
    return out


def _theta(compression: float) -> Fraction:
    # The decimal the user wrote, exactly: 0.57 * 100 keeps 57 maps, not float's 56.99999.
    return Fraction(repr(compression))


def _square(size: Size, kernel: int, stride: int, padding: int) -> tuple[Size, Size, Size]:
    """Kernel, stride and padding of the same extent on every axis of ``size``'s rank."""
    rank = len(size)
    return (kernel,) * rank, (stride,) * rank, (padding,) * rank


def _conv(path: str, c_in: int, c_out: int, size: Size, kernel: int, stride: int = 1, padding: int = 0) -> Conv:
    k, s, p = _square(size, kernel, stride, padding)
    return Conv(path=path, in_channels=c_in, in_size=size, out_channels=c_out, kernel=k, stride=s, padding=p)


def _pool(
    path: str, kind: Literal["max", "avg"], channels: int, size: Size, kernel: int, stride: int, pad: int
) -> Pool:
    k, s, p = _square(size, kernel, stride, pad)
    return Pool(path=path, in_channels=channels, in_size=size, pool=kind, kernel=k, stride=s, padding=p)


class _Ops:
    """The spec's norm and activation, as op records at a given path."""

    def __init__(self, spec: Spec) -> None:
        self.norm_spec = spec.norm
        self.act_spec = spec.activation

    def norm(self, path: str, channels: int, size: Size) -> Norm | None:
        """The spec's norm (None for ``norm: none``)."""
        n = self.norm_spec
        if n.kind == "none":
            return None
        groups = n.group_count if n.kind == "group" else 1
        return Norm(
            path=path,
            in_channels=channels,
            in_size=size,
            norm=n.kind,
            eps=n.eps,
            momentum=n.momentum,
            affine=n.is_affine,
            groups=groups,
        )

    def act(self, path: str, channels: int, size: Size, *, inplace: bool = True) -> Act:
        return Act(
            path=path,
            in_channels=channels,
            in_size=size,
            act=self.act_spec.kind,
            args=self.act_spec.args(),
            inplace=inplace,
        )

    def norm_act(self, prefix: str, suffix: str, channels: int, size: Size, *, inplace: bool = True) -> list[Op]:
        """``norm{suffix}`` then ``{act}{suffix}``; the activation is in place only behind a norm
        (and not behind a norm whose output is a feature tap: ``inplace=False``)."""
        norm = self.norm(f"{prefix}norm{suffix}", channels, size)
        act = self.act(f"{prefix}relu{suffix}", channels, size, inplace=inplace and norm is not None)
        return [norm, act] if norm is not None else [act]


def _stem(spec: Spec, ops: _Ops, size: Size, out: Lowered) -> str:
    """The stem's layers; its last norm is the first feature tap (timm's ``norm0``/``norm2``), so
    the activation after it is not in place: a full backward hook on that norm would otherwise
    see its output modified in place."""
    c_in, c_out = spec.input.channels, spec.stem_channels
    stem = spec.stem
    if stem.kind == "cifar":
        chain: list[Op] = [_conv("features.conv0", c_in, c_out, size, 3, 1, 1)]
    elif stem.kind == "deep":
        mid = stem.mid_channels or [spec.growth_rate, spec.growth_rate]
        widths = [(c_in, mid[0], 2), (mid[0], mid[1], 1), (mid[1], c_out, 1)]
        chain = []
        for i, (a, b, stride) in enumerate(widths):
            conv = _conv(f"features.conv{i}", a, b, size, 3, stride, 1)
            size = conv.out_size
            chain += [conv, *ops.norm_act("features.", str(i), b, size, inplace=i < 2)]
    else:
        conv0 = _conv("features.conv0", c_in, c_out, size, 7, 2, 3)
        chain = [conv0, *ops.norm_act("features.", "0", c_out, conv0.out_size, inplace=False)]
    previous: list[str] = []
    for op in chain:
        out.append((Layer(op.path, _STEM_KINDS[op.kind], "stem", (op,)), previous))
        previous = [op.path]
    if stem.kind != "cifar":
        pool = _stem_pool(spec, c_out, chain[-1].out_size)
        out.append((Layer("features.pool0", "pool", "stem", pool), previous))
        previous = ["features.pool0"]
    return previous[0]


_STEM_KINDS: dict[str, LayerKind] = {"conv": "conv", "norm": "norm", "act": "relu"}


def _stem_pool(spec: Spec, channels: int, size: Size) -> tuple[Op, ...]:
    """Max-pool 3x3/2; with anti-aliasing, timm's max-pool 3x3/1 then a blur stride 2."""
    if spec.anti_alias == "none":
        return (_pool("features.pool0", "max", channels, size, 3, 2, 1),)
    pool = _pool("features.pool0.0", "max", channels, size, 3, 1, 1)
    blur = Blur(path="features.pool0.1", in_channels=channels, in_size=pool.out_size, stride=(2,) * len(size))
    return (pool, blur)


def _dense_layer(ops: _Ops, block: BlockConfig, path: str, c_in: int, size: Size, number: int) -> Layer:
    k = block.growth_rate
    chain = ops.norm_act(f"{path}.", "1", c_in, size)
    if block.bottleneck_width is None:
        chain.append(_conv(f"{path}.conv1", c_in, k, size, 3, 1, 1))
    else:
        width = block.bottleneck_width * k
        chain += [
            _conv(f"{path}.conv1", c_in, width, size, 1),
            *ops.norm_act(f"{path}.", "2", width, size),
            _conv(f"{path}.conv2", width, k, size, 3, 1, 1),
        ]
    if block.dropout > 0:
        chain.append(Dropout(path=f"{path}.dropout", in_channels=k, in_size=size, p=block.dropout))
    return Layer(path, "dense_layer", f"denseblock{number}", tuple(chain), number)


def _transition(spec: Spec, ops: _Ops, path: str, c_in: int, c_out: int, size: Size, block: int) -> Layer:
    norm = ops.norm(f"{path}.norm", c_in, size)
    chain: list[Op] = [norm] if norm is not None else []
    chain += [
        ops.act(f"{path}.relu", c_in, size, inplace=norm is not None),
        _conv(f"{path}.conv", c_in, c_out, size, 1),
    ]
    if spec.anti_alias == "all":
        chain.append(Blur(path=f"{path}.pool", in_channels=c_out, in_size=size, stride=(2,) * len(size)))
    else:
        chain.append(_pool(f"{path}.pool", "avg", c_out, size, 2, 2, 0))
    return Layer(path, "transition", path.rsplit(".", 1)[-1], tuple(chain), block)


def _classifier(spec: Spec, ops: _Ops, c_in: int, size: Size) -> Layer:
    """The head: activation (not in place, so that hooks on norm5 work), global pool, flatten,
    dropout, linear; without classes, the pooled features are the output."""
    ones = (1,) * len(size)
    pool = GlobalPool(path="head.pool", in_channels=c_in, in_size=size, pool=spec.head.pool)
    features = pool.out_channels
    chain: list[Op] = [
        ops.act("head.relu", c_in, size, inplace=False),
        pool,
        Flatten(path="head.flatten", in_channels=features, in_size=ones),
    ]
    if spec.head.dropout > 0:
        chain.append(Dropout(path="head.dropout", in_channels=features, in_size=ones, p=spec.head.dropout))
    if spec.num_classes > 0:
        chain.append(Linear(path="classifier", in_channels=features, in_size=ones, out_channels=spec.num_classes))
    return Layer("classifier" if spec.num_classes > 0 else "head", "classifier", "head", tuple(chain))


# ----------------------------------------------------------------------------- spec checks


def _check_counts(spec: Spec) -> FieldProblems:
    """Refuse a spec with too many layers or connections to lower, from arithmetic alone."""
    blocks = spec.block_layers
    total = sum(n for n, _ in blocks)
    if total > MAX_DENSE_LAYERS:
        message = f"{format_count(total)} dense layers is too many to build (at most {MAX_DENSE_LAYERS:,})"
        return [(("blocks",), message)]
    connections = sum(n * (n + 1) // 2 + n + 1 for n, _ in blocks)
    if connections > MAX_DENSE_CONNECTIONS:
        largest = max(n for n, _ in blocks)
        return [
            (
                ("blocks",),
                f"{format_count(connections)} dense connections is too many to build "
                f"(at most {MAX_DENSE_CONNECTIONS:,}); "
                f"the largest block has {format_count(largest)} layers; split it into more blocks",
            )
        ]
    return []


def _check_params(spec: Spec, lowered: Lowered) -> FieldProblems:
    """Refuse a network too big to build, from the layer records, before any tensor exists.

    The problem names the field that makes it so big, where one does (see :func:`_culprit`).
    """
    params = sum(layer.params for layer, _ in lowered)
    if params <= MAX_PARAMS:
        return []
    too_many = f"{format_count(params)} parameters is too many to build (at most {MAX_PARAMS:,})"
    culprit = _culprit(spec, params)
    if culprit is None:
        return [((), f"{too_many}; lower growth_rate, the widths or the number of layers")]
    path, typical = culprit
    return [(path, f"{too_many}, most of them because of this value; lower it (e.g. {typical})")]


def _culprit(spec: Spec, now: int) -> tuple[FieldPath, str] | None:
    """The field whose usual value would shrink the network (``now`` parameters) the most, if that
    clearly fixes it.

    Each candidate is set to a usual value and lowered again (layer records only: the same count as
    the check's); the best one is the cause when it brings the count under the limit or at least
    ten times down. None when no single value stands out.
    """
    best: tuple[int, FieldPath, str] | None = None
    for path, typical, variant in _candidates(spec):
        params = _params(variant)
        if best is None or params < best[0]:
            best = (params, path, typical)
    if best is None or (best[0] > MAX_PARAMS and best[0] * 10 > now):
        return None
    return best[1], best[2]


def _candidates(spec: Spec) -> Iterator[tuple[FieldPath, str, Spec]]:
    """(field, its usual value as said in a message, the spec with that value) for each width field
    set above its usual value; of the blocks' own values, only the widest block's."""
    stem = spec.stem
    widths: list[tuple[FieldPath, int | None, int, Callable[[], Spec]]] = [
        (("growth_rate",), spec.growth_rate, 32, lambda: spec.model_copy(update={"growth_rate": 32})),
        (("num_classes",), spec.num_classes, 1000, lambda: spec.model_copy(update={"num_classes": 1000})),
        (("bottleneck_width",), spec.bottleneck_width, 4, lambda: spec.model_copy(update={"bottleneck_width": 4})),
        (("input", "channels"), spec.input.channels, 3, lambda: _with(spec, "input", channels=3)),
        (("stem", "channels"), stem.channels, 64, lambda: _with(spec, "stem", channels=64)),
    ]
    if stem.kind == "deep" and stem.mid_channels is not None:
        widths.append(
            (("stem", "mid_channels"), max(stem.mid_channels), 32, lambda: _with(spec, "stem", mid_channels=[32, 32]))
        )
    for path, value, typical, make in widths + _block_widths(spec):
        if value is not None and value > typical:
            yield path, str(typical), make()


def _block_widths(spec: Spec) -> list[tuple[FieldPath, int | None, int, Callable[[], Spec]]]:
    """The widest written block's own growth rate and bottleneck width, as candidates."""
    written = [(i, b) for i, b in enumerate(spec.blocks) if isinstance(b, BlockSpec)]
    if not written:
        return []
    i, block = max(written, key=lambda ib: (ib[1].growth_rate or 0) * (ib[1].bottleneck_width or 1))

    def variant(**update: int) -> Spec:
        blocks = list(spec.blocks)
        blocks[i] = block.model_copy(update=update)
        return spec.model_copy(update={"blocks": blocks})

    return [
        (("blocks", i, "growth_rate"), block.growth_rate, 32, lambda: variant(growth_rate=32)),
        (("blocks", i, "bottleneck_width"), block.bottleneck_width, 4, lambda: variant(bottleneck_width=4)),
    ]


def _with(spec: Spec, part: str, **update: object) -> Spec:
    """``spec`` with some fields of its ``input`` or ``stem`` replaced (no validation: a what-if)."""
    return spec.model_copy(update={part: getattr(spec, part).model_copy(update=update)})


def _params(spec: Spec) -> int:
    """The parameters of ``spec``, from its layer records (nothing the size of the network is made)."""
    return sum(layer.params for layer, _ in _lower(spec, spec.input.shape))


def _compression_path(spec: Spec, block: int | None) -> FieldPath:
    """Where the θ of the transition after ``block`` was written: the block's own, or the spec's."""
    given = spec.blocks[block - 1] if block is not None else None
    if given is not None and not isinstance(given, int) and given.compression is not None:
        return ("blocks", block - 1, "compression")  # type: ignore[operator]
    return ("compression",)


def _check_lowered(spec: Spec, lowered: Lowered) -> FieldProblems:
    problems: FieldProblems = []
    configs = spec.block_configs
    for layer, _ in lowered:
        if layer.kind == "transition" and layer.out_channels < 1 and layer.block is not None:
            theta = configs[layer.block - 1].compression
            problems.append(
                (
                    _compression_path(spec, layer.block),
                    f"{layer.name} keeps floor({theta} x {layer.in_channels}) = 0 maps; "
                    "raise compression or growth_rate",
                )
            )
    problems += _check_groups(spec, lowered)
    shrunk = next((layer for layer, _ in lowered if _shrinks(layer)), None)
    if shrunk is not None:
        problems.append(_too_small(spec, lowered, shrunk))
    else:  # a map shrunk to nothing also leaves an instance norm too little: one message says both
        problems += _check_instance_norms(lowered)
    return problems


PRACTICAL_SIZE = 10**6  # pixels per side: past it, no input will do and the size is not worth printing


def _too_small(spec: Spec, lowered: Lowered, shrunk: Layer) -> tuple[FieldPath, str]:
    """The input is too small for the network: name the smallest that works, or, where that is
    absurd (thousands of digits), blame the transitions that halve the maps (``blocks``)."""
    size = format_size(spec.input.shape)
    smallest = _smallest_input(lowered)
    if max(smallest) <= PRACTICAL_SIZE:
        return (
            ("input", "size"),
            f"{size} is too small: the feature maps shrink to nothing at {shrunk.name}; "
            f"the smallest input that works is {_as_written(smallest)}",
        )
    transitions = len(spec.blocks) - 1
    fits = f"; {size} allows at most {shrunk.block} blocks" if shrunk.kind == "transition" else ""
    return (
        ("blocks",),
        f"{format_count(len(spec.blocks))} blocks make {format_count(transitions)} transitions, each halving "
        f"the feature maps: no practical input size works (the smallest is over {PRACTICAL_SIZE:,} pixels a side); "
        f"use fewer blocks{fits}",
    )


def _as_written(size: Size) -> str:
    """A size to write in ``input.size``: ``[16]`` for a 1-D network (a bare 16 is a square image)."""
    return f"[{size[0]}]" if len(size) == 1 else format_size(size)


def _shrinks(layer: Layer) -> bool:
    """A map with no position left, or one too small to reflect-pad for a blur."""
    return min(layer.out_size) < 1 or any(isinstance(op, Blur) and min(op.in_size) < 2 for op in layer.ops)


def _check_groups(spec: Spec, lowered: Lowered) -> FieldProblems:
    """Group norm needs every norm's channels to split into whole groups.

    The message names what made the first failing width (the stem, the bottleneck, a growth
    rate or a transition's compression), as the fix is there, and the number of groups that
    would divide every width, when one above 1 does.
    """
    bad = [
        (layer, op) for layer, _ in lowered for op in layer.ops if isinstance(op, Norm) and op.in_channels % op.groups
    ]
    if not bad:
        return []
    layer, first = bad[0]
    more = f" (and {len(bad) - 1} more norms)" if len(bad) > 1 else ""
    return [
        (
            ("norm", "groups"),
            f"{first.path} has {first.in_channels} channels, which {first.groups} groups do not divide{more}; "
            f"{_width_origin(spec, lowered, layer, first)}{_groups_that_fit(lowered, first.groups)}",
        )
    ]


def _width_origin(spec: Spec, lowered: Lowered, layer: Layer, norm: Norm) -> str:
    """What made ``norm``'s width one that its groups do not divide, and the field to change."""
    width, groups = norm.in_channels, norm.groups
    if layer.stage == "stem":
        if norm.path != _last_stem_norm(lowered):  # the deep stem's first two convolutions
            if spec.stem.kind == "deep" and spec.stem.mid_channels:
                return f"{width} is a width of stem.mid_channels: make each a multiple of {groups}"
            return (
                f"{width} is a width of the deep stem's first convolutions, growth_rate by default: "
                f"set stem.mid_channels to multiples of {groups}"
            )
        return _stem_width(spec, width, groups)
    if layer.kind == "dense_layer" and norm.path.endswith(".norm2"):
        config = spec.block_configs[(layer.block or 1) - 1]
        return (
            f"{width} is the bottleneck width, bottleneck_width {config.bottleneck_width} x growth rate "
            f"{config.growth_rate}: make it a multiple of {groups}"
        )
    block = layer.block or len(spec.blocks)  # norm5 follows the last block
    entry = next(lay for lay, _ in lowered if lay.kind == "dense_layer" and lay.block == block).in_channels
    if entry % groups:
        if block == 1:
            return _stem_width(spec, entry, groups)
        return _transition_width(spec, lowered, block - 1, entry, groups)
    growth = spec.block_configs[block - 1].growth_rate
    given = spec.blocks[block - 1]
    field = f"blocks[{block - 1}].growth_rate" if isinstance(given, BlockSpec) and given.growth_rate else "growth_rate"
    return (
        f"each layer of denseblock{block} adds {growth} channels ({field}), which {groups} groups do not "
        f"divide: make {field} a multiple of {groups}"
    )


def _last_stem_norm(lowered: Lowered) -> str:
    """The path of the stem's last norm, the one on the stem's output width."""
    norms = [op.path for layer, _ in lowered if layer.stage == "stem" for op in layer.ops if isinstance(op, Norm)]
    return norms[-1] if norms else ""


def _stem_width(spec: Spec, width: int, groups: int) -> str:
    """The stem's width as the cause: written as stem.channels, or 2 x growth_rate by default."""
    if spec.stem.channels is not None:
        return f"{width} is the stem's width (stem.channels): make it a multiple of {groups}"
    return (
        f"{width} is the stem's width, 2 x growth_rate by default: set stem.channels (or growth_rate) "
        f"to a multiple of {groups}"
    )


def _transition_width(spec: Spec, lowered: Lowered, block: int, width: int, groups: int) -> str:
    """The maps the transition after ``block`` keeps as the cause: floor(theta x m), by its compression."""
    transition = next(lay for lay, _ in lowered if lay.kind == "transition" and lay.block == block)
    theta = spec.block_configs[block - 1].compression
    field = format_path(_compression_path(spec, block))
    return (
        f"{width} is what {transition.name} keeps of its {transition.in_channels} maps at {field} {theta} "
        f"(floor({theta} x {transition.in_channels})): choose a {field} that keeps a multiple of {groups}"
    )


def _groups_that_fit(lowered: Lowered, groups: int) -> str:
    """``, or groups: N, which divides every norm's channels``: the largest such N below ``groups``;
    '' when only 1 does (no number of groups fits the network as it is)."""
    common = 0
    for layer, _ in lowered:
        for op in layer.ops:
            if isinstance(op, Norm):
                common = math.gcd(common, op.in_channels)
    fits = next((n for n in range(min(groups, common), 1, -1) if common % n == 0), None)
    return f"; or norm.groups: {fits}, which divides every norm's channels" if fits else ""


def _check_instance_norms(lowered: Lowered) -> FieldProblems:
    """Instance norm normalises each channel of each sample over its positions: it needs two."""
    for layer, _ in lowered:
        for op in layer.ops:
            if isinstance(op, Norm) and op.norm == "instance" and math.prod(op.in_size) < 2:
                return [
                    (
                        ("input", "size"),
                        f"{op.path}: instance norm needs more than one position per channel, and the map is "
                        f"{format_size(op.in_size)} there; use another norm or a larger input (the smallest that "
                        f"works is {_as_written(_smallest_input(lowered))})",
                    )
                ]
    return []


def _smallest_input(lowered: Lowered) -> Size:
    """The least input length per axis for which every feature map keeps at least one pixel.

    Walks the windows backwards once: a window of kernel k, stride s and padding p gives at least
    m outputs exactly when its input has at least ``(m - 1) * s + k - 2p`` (and one) positions; a
    blur's reflect padding needs two, and an instance norm two positions (two on every axis: the
    smallest square input for a square network).
    """
    ops = [op for layer, _ in lowered for op in layer.ops if isinstance(op, Conv | Pool | Blur | Norm)]
    rank = len(lowered[0][0].in_size)
    need = [1] * rank
    for op in reversed(ops):
        if isinstance(op, Norm):
            if op.norm == "instance" and math.prod(need) < 2:
                need = [max(2, m) for m in need]
            continue
        least = 2 if isinstance(op, Blur) else 1
        need = [
            max(least, (m - 1) * s + k - 2 * p)
            for m, k, s, p in zip(need, op.kernel, op.stride, op.padding, strict=True)
        ]
    return tuple(need)


SMALL_FOR_STRIDED_STEM = 64


def _stem_warnings(spec: Spec) -> FieldProblems:
    """A CIFAR-sized input behind a stem that divides it by 4 before the first block."""
    shape = spec.input.shape
    if spec.stem.kind == "cifar" or min(shape) >= SMALL_FOR_STRIDED_STEM:
        return []
    quarter = format_size(tuple(-(-n // 4) for n in shape))
    small = "CIFAR-sized inputs" if len(shape) == 2 else "inputs this small"
    conv = format_size((3,) * len(shape))
    return [
        (
            ("input", "size"),
            f"{format_size(shape)} is small for the {spec.stem.kind} stem, which divides it by 4 before the first "
            f"block ({quarter}); for {small} use stem: cifar (a {conv} conv at full resolution)",
        )
    ]


def _last_block_warnings(spec: Spec) -> FieldProblems:
    """A compression written for the last block, which has no transition to use it: a warning, not
    an error (a list of per-block overrides is often written alike for every block, as design.md's
    example is); ``--strict`` makes it an error."""
    last = spec.blocks[-1]
    if not isinstance(last, BlockSpec) or last.compression is None:
        return []
    path: FieldPath = ("blocks", len(spec.blocks) - 1, "compression")
    return [(path, "the last block has no transition after it, so nothing uses its compression; remove it")]


def _compression_warnings(spec: Spec, lowered: Lowered) -> FieldProblems:
    configs = spec.block_configs
    out: FieldProblems = []
    for layer, _ in lowered:
        if layer.kind != "transition" or layer.block is None:
            continue
        written = configs[layer.block - 1].compression
        theta = _theta(written)
        if (theta * layer.in_channels).denominator != 1:
            exact = float(theta * layer.in_channels)  # bounded: the parameter limit is checked first
            path = _compression_path(spec, layer.block)
            message = (
                f"{layer.name}: {written}{{}} x {layer.in_channels} = {exact:g} maps is not an integer; "
                f"{layer.out_channels} are kept (floor)"
            )
            if path in spec.source.values or not spec.source.values:
                out.append((path, message.format("")))
            else:  # unwritten: placed at the block whose width it floors, and said to be the default
                out.append((path, message.format(" (the default compression)"), ("blocks", layer.block - 1)))
    return out
