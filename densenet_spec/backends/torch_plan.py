"""IR to the module tree of a torch network, as constructor calls; torch itself is not imported.

Each op kind maps to a constructor call through :data:`MODULES` (one entry per kind, so a new op
kind is one :func:`register_module` call). :func:`plan` walks the IR once and arranges the calls
into torchvision's tree: ``features`` (stem ops, dense blocks of dense layers, transitions, the
final norm), ``head`` and ``classifier``. :mod:`.torch_module` instantiates the plan;
:mod:`.torch_source` writes it out as source. One plan for both, so the two cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..ir import IR, Act, Affine, Blur, Clamp, Conv, Dropout, Flatten, GlobalPool, Layer, Linear, Norm, Op, Pool, Shape


@dataclass(frozen=True)
class Call:
    """A module constructor call, e.g. ``nn.Conv2d(64, 128, 1, bias=False)``.

    ``callee`` is ``nn.*`` or a class of :mod:`.torch_runtime`, so the call can be run in process
    (:mod:`.torch_module`) or written into standalone source that imports only torch.
    """

    callee: str
    args: tuple[Any, ...] = ()
    kwargs: tuple[tuple[str, Any], ...] = ()


def _window(values: Shape) -> int | Shape:
    """A per-axis window written as torch accepts it: one int when every axis agrees."""
    return values[0] if len(set(values)) == 1 else values


def _conv(op: Op) -> Call:
    assert isinstance(op, Conv)
    kwargs: dict[str, Any] = {}
    if any(s != 1 for s in op.stride):
        kwargs["stride"] = _window(op.stride)
    if any(op.padding):
        kwargs["padding"] = _window(op.padding)
    if op.groups != 1:
        kwargs["groups"] = op.groups
    kwargs["bias"] = op.bias
    args = (op.in_channels, op.out_channels, _window(op.kernel))
    return Call(f"nn.Conv{op.rank}d", args, tuple(kwargs.items()))


def _options(op: Norm, *, momentum: bool, affine_default: bool) -> tuple[tuple[str, Any], ...]:
    """The keyword arguments that differ from torch's defaults (so plain specs read as before)."""
    kwargs: dict[str, Any] = {}
    if op.eps != 1e-5:
        kwargs["eps"] = op.eps
    if momentum and op.momentum != 0.1:
        kwargs["momentum"] = op.momentum
    if op.affine != affine_default:
        kwargs["affine"] = op.affine
    return tuple(kwargs.items())


NORMS: dict[str, Callable[[Norm], Call]] = {
    "batch": lambda op: Call(
        f"nn.BatchNorm{op.rank}d", (op.in_channels,), _options(op, momentum=True, affine_default=True)
    ),
    "group": lambda op: Call(
        "nn.GroupNorm", (op.groups, op.in_channels), _options(op, momentum=False, affine_default=True)
    ),
    "instance": lambda op: Call(
        f"nn.InstanceNorm{op.rank}d", (op.in_channels,), _options(op, momentum=True, affine_default=False)
    ),
}
"""Norm kind to torch module (MONAI's and timm's choices are torch's own modules with these defaults)."""


def _norm(op: Op) -> Call:
    assert isinstance(op, Norm)
    return NORMS[op.norm](op)


ACTIVATIONS: dict[str, tuple[str, bool]] = {
    "relu": ("nn.ReLU", True),
    "relu6": ("nn.ReLU6", True),
    "leaky_relu": ("nn.LeakyReLU", True),
    "elu": ("nn.ELU", True),
    "gelu": ("nn.GELU", False),
    "silu": ("nn.SiLU", True),
    "mish": ("nn.Mish", True),
    "hardswish": ("nn.Hardswish", True),
}
"""Activation kind to (torch module, whether it can work in place); ``args`` become keyword arguments."""


def _act(op: Op) -> Call:
    assert isinstance(op, Act)
    callee, can_inplace = ACTIVATIONS[op.act]
    kwargs = (*op.args, ("inplace", True)) if op.inplace and can_inplace else op.args
    return Call(callee, (), kwargs)


def _pool(op: Op) -> Call:
    assert isinstance(op, Pool)
    args: tuple[Any, ...] = (_window(op.kernel), _window(op.stride))
    if any(op.padding):
        args += (_window(op.padding),)
    return Call(f"nn.{op.pool.capitalize()}Pool{op.rank}d", args)


def _global_pool(op: Op) -> Call:
    assert isinstance(op, GlobalPool)
    if op.pool in ("avg", "max"):
        return Call(f"nn.Adaptive{op.pool.capitalize()}Pool{op.rank}d", (1,))
    return Call("AvgMaxPool", (op.rank,), (("cat", True),) if op.pool == "catavgmax" else ())


def _blur(op: Op) -> Call:
    assert isinstance(op, Blur)
    return Call("BlurPool", (op.in_channels, op.rank, _window(op.stride)))


def _linear(op: Op) -> Call:
    assert isinstance(op, Linear)
    return Call("nn.Linear", (op.in_channels, op.out_channels), () if op.bias else (("bias", False),))


def _dropout(op: Op) -> Call:
    assert isinstance(op, Dropout)
    return Call("nn.Dropout", (op.p,))


MODULES: dict[str, Callable[[Op], Call]] = {
    Conv.kind: _conv,
    Norm.kind: _norm,
    Act.kind: _act,
    Pool.kind: _pool,
    GlobalPool.kind: _global_pool,
    Flatten.kind: lambda op: Call("nn.Flatten", (1,)),
    Linear.kind: _linear,
    Dropout.kind: _dropout,
    Affine.kind: lambda op: Call("Affine", (op.in_channels, op.rank)),
    Clamp.kind: lambda op: Call("Clamp", (op.in_channels, op.rank)),
    Blur.kind: _blur,
}
"""Op kind to the constructor call of its torch module."""


def register_module(kind: str, emitter: Callable[[Op], Call]) -> None:
    """Teach the torch backend (and its source writer) a new op kind: ``emitter`` gives its module's call."""
    MODULES[kind] = emitter


def module_call(op: Op) -> Call:
    try:
        emitter = MODULES[op.kind]
    except KeyError:
        raise ValueError(f"{op.path}: the torch backend has no module for op kind {op.kind!r}") from None
    return emitter(op)


# ----------------------------------------------------------------------------- the module tree

Ops = list[tuple[str, Call]]  # (module name, constructor call), in order


@dataclass
class BlockPlan:
    """A dense block: each layer's ops, and the channels of the concatenation it returns."""

    name: str
    layers: list[Ops]
    in_channels: list[int]
    out_channels: int


@dataclass
class Plan:
    """The module tree of a network, as constructor calls, in construction order."""

    features: list[tuple[str, Call | BlockPlan | Ops]] = field(default_factory=list)
    head: Ops = field(default_factory=list)
    classifier: Call | None = None
    inference_only: bool = False
    channels_last: bool = False  # inference-only 2-D networks: where CPU convolutions are fastest


def _ops(layer: Layer) -> Ops:
    return [(op.name, module_call(op)) for op in layer.ops]


def plan(ir: IR) -> Plan:
    """Arrange the IR's ops as torchvision's module tree: what :func:`build_module` instantiates."""
    out = Plan(inference_only=ir.info.inference_only, channels_last=ir.info.inference_only and ir.rank == 2)
    blocks: dict[int, BlockPlan] = {}
    for layer in ir.layers():
        if layer.kind == "dense_layer" and layer.block is not None:
            if layer.block not in blocks:
                blocks[layer.block] = BlockPlan(layer.stage, [], [], 0)
                out.features.append((layer.stage, blocks[layer.block]))
            block = blocks[layer.block]
            block.layers.append(_ops(layer))
            block.in_channels.append(layer.in_channels)
            block.out_channels = layer.in_channels + layer.out_channels
        elif layer.kind == "transition":
            out.features.append((layer.stage, _ops(layer)))
        elif layer.kind == "classifier":
            *head, last = layer.ops
            linear = isinstance(last, Linear)
            out.head = [(op.name, module_call(op)) for op in (head if linear else layer.ops)]
            out.classifier = module_call(last) if linear else None
        elif all(op.path == layer.name for op in layer.ops):
            out.features += _ops(layer)
        else:  # a stem layer of several modules (max-pool then blur): a Sequential of its own
            out.features.append((layer.name.rsplit(".", 1)[-1], _ops(layer)))
    return out
