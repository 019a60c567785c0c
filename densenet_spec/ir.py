"""The intermediate representation: typed ops, layers, and dense connections in a ``networkx.DiGraph``.

Two levels. The graph's nodes are *layers* (each stem piece, each dense layer, each transition,
the final norm, the classifier), keyed by their torchvision module path; its edges are the
connections between them, the dense connections included, each carrying its ``slot`` in the
receiving layer's concatenation. Each layer holds its ordered *ops*, one record type per op kind
(:class:`Conv`, :class:`Norm`, :class:`Act`, ...), named as the modules will be, with every
constant a backend needs (kernel, stride and padding per spatial axis, BN eps and momentum, ...).
Sizes are tuples of rank 1, 2 or 3, so the same IR describes 1-D, 2-D and 3-D networks.

An :class:`IR` is immutable: its graph is frozen, and a pass builds a new IR from an edited list of
``(layer, inputs)`` records (:meth:`IR.lowered`, :func:`build_ir`). :func:`check_ir` states the
invariants that the compiler and every pass must keep.

Node attribute (for users of networkx): ``layer``, the :class:`Layer`; everything else (channels,
sizes, costs) is read from it. Edge attribute: ``slot``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any, ClassVar, Literal

import networkx as nx

from .errors import Problem

Shape = tuple[int, ...]
Size = Shape  # a spatial size: (length,), (height, width) or (depth, height, width)
LayerKind = Literal["conv", "norm", "relu", "pool", "dense_layer", "transition", "classifier"]


def pooled(size: int, kernel: int, stride: int, padding: int, dilation: int = 1) -> int:
    """Output length of a convolution or pooling window along one axis (floor mode)."""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def format_size(size: Shape) -> str:
    """``(56, 56)`` as ``56x56``; ``(32, 32, 32)`` as ``32x32x32``."""
    return "x".join(str(n) for n in size)


# ----------------------------------------------------------------------------- ops


@dataclass(frozen=True, kw_only=True)
class Op:
    """One module of a layer. ``path`` is its full module path (the state_dict prefix).

    Subclasses set :attr:`kind` and override what differs from an element-wise op: output
    channels and size, learnable parameters, multiply-accumulates and state_dict tensors.
    """

    kind: ClassVar[str] = ""

    path: str
    in_channels: int
    in_size: Shape

    @property
    def name(self) -> str:
        """The op's name inside its layer (``conv1``)."""
        return self.path.rsplit(".", 1)[-1]

    @property
    def rank(self) -> int:
        """Spatial dimensions: 1, 2 or 3."""
        return len(self.in_size)

    @property
    def out_channels(self) -> int:
        return self.in_channels

    @property
    def out_size(self) -> Shape:
        return self.in_size

    @property
    def params(self) -> int:
        """Learnable parameters; buffers (BN running statistics, folded bounds) are not counted."""
        return 0

    @property
    def macs(self) -> int:
        """Multiply-accumulates of convolutions and linear layers; other ops count 0."""
        return 0

    def tensors(self) -> dict[str, Shape]:
        """The op's state_dict entries (``weight``, ``running_mean``, ...) and their shapes."""
        return {}

    def to_json(self) -> dict[str, Any]:
        """A plain-data view: the op's own fields, then what follows from them."""
        out: dict[str, Any] = {"path": self.path, "kind": self.kind}
        for f in fields(self):
            if f.name != "path":
                value = getattr(self, f.name)
                out[f.name] = list(value) if isinstance(value, tuple) else value
        out |= {"out_channels": self.out_channels, "out_size": list(self.out_size)}
        return out | {"params": self.params, "macs": self.macs}


@dataclass(frozen=True, kw_only=True)
class Conv(Op):
    """A convolution; ``kernel``, ``stride`` and ``padding`` have one entry per spatial axis."""

    kind: ClassVar[str] = "conv"

    out_channels: int = 0  # a field here, a property on Op (a default keeps the property shadowed)
    kernel: Shape
    stride: Shape
    padding: Shape
    groups: int = 1
    bias: bool = False

    @property
    def out_size(self) -> Shape:
        return tuple(
            pooled(n, k, s, p) for n, k, s, p in zip(self.in_size, self.kernel, self.stride, self.padding, strict=True)
        )

    @property
    def params(self) -> int:
        return math.prod(self.tensors()["weight"]) + (self.out_channels if self.bias else 0)

    @property
    def macs(self) -> int:
        return self.out_channels * math.prod(self.out_size) * (self.in_channels // self.groups) * math.prod(self.kernel)

    def tensors(self) -> dict[str, Shape]:
        weight = (self.out_channels, self.in_channels // self.groups, *self.kernel)
        return {"weight": weight} | ({"bias": (self.out_channels,)} if self.bias else {})


NormKind = Literal["batch", "group", "instance"]


@dataclass(frozen=True, kw_only=True)
class Norm(Op):
    """A normalisation layer with torch's semantics for its kind.

    batch: running statistics (buffers) and, in training, batch statistics; group: ``groups``
    groups of channels per sample; instance: each channel of each sample, no running statistics.
    """

    kind: ClassVar[str] = "norm"

    norm: NormKind = "batch"
    eps: float = 1e-5
    momentum: float = 0.1
    affine: bool = True
    groups: int = 1  # group norm only

    @property
    def params(self) -> int:
        return 2 * self.in_channels if self.affine else 0

    def tensors(self) -> dict[str, Shape]:
        c: Shape = (self.in_channels,)
        learnable: dict[str, Shape] = {"weight": c, "bias": c} if self.affine else {}
        if self.norm != "batch":
            return learnable
        return learnable | {"running_mean": c, "running_var": c, "num_batches_tracked": ()}


@dataclass(frozen=True, kw_only=True)
class Act(Op):
    """An element-wise activation; ``args`` holds its parameters (``negative_slope``, ...) by name."""

    kind: ClassVar[str] = "act"

    act: str = "relu"
    args: tuple[tuple[str, float | str], ...] = ()
    inplace: bool = True


@dataclass(frozen=True, kw_only=True)
class Pool(Op):
    """A max or average pooling window (floor mode; average pools count the zero padding)."""

    kind: ClassVar[str] = "pool"

    pool: Literal["max", "avg"]
    kernel: Shape
    stride: Shape
    padding: Shape

    @property
    def out_size(self) -> Shape:
        return tuple(
            pooled(n, k, s, p) for n, k, s, p in zip(self.in_size, self.kernel, self.stride, self.padding, strict=True)
        )


@dataclass(frozen=True, kw_only=True)
class Blur(Op):
    """timm's blur pool: reflect-pad, then a fixed binomial filter ([1, 2, 1] per axis) with a stride.

    The filter is a buffer that is not saved (no state_dict entry); its multiply-accumulates count,
    as a depthwise convolution's do.
    """

    kind: ClassVar[str] = "blur"

    stride: Shape
    kernel: Shape = ()
    padding: Shape = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "kernel", self.kernel or (3,) * self.rank)
        object.__setattr__(self, "padding", self.padding or (1,) * self.rank)

    @property
    def out_size(self) -> Shape:
        return tuple(
            pooled(n, k, s, p) for n, k, s, p in zip(self.in_size, self.kernel, self.stride, self.padding, strict=True)
        )

    @property
    def macs(self) -> int:
        return self.in_channels * math.prod(self.out_size) * math.prod(self.kernel)


GlobalPoolKind = Literal["avg", "max", "avgmax", "catavgmax"]


@dataclass(frozen=True, kw_only=True)
class GlobalPool(Op):
    """Pooling over every spatial position to one value per channel (size 1 on every axis).

    avgmax is the mean of the average and the maximum; catavgmax concatenates them (2C channels).
    """

    kind: ClassVar[str] = "global_pool"

    pool: GlobalPoolKind = "avg"

    @property
    def out_channels(self) -> int:
        return 2 * self.in_channels if self.pool == "catavgmax" else self.in_channels

    @property
    def out_size(self) -> Shape:
        return (1,) * self.rank


@dataclass(frozen=True, kw_only=True)
class Flatten(Op):
    """``(N, C, 1, ...)`` to ``(N, C)``; the size stays recorded as ones for the cost tables."""

    kind: ClassVar[str] = "flatten"

    @property
    def out_size(self) -> Shape:
        return (1,) * self.rank


@dataclass(frozen=True, kw_only=True)
class Linear(Op):
    """A fully connected layer on flattened features."""

    kind: ClassVar[str] = "linear"

    out_channels: int = 0
    bias: bool = True

    @property
    def out_size(self) -> Shape:
        return (1,) * self.rank

    @property
    def params(self) -> int:
        return self.in_channels * self.out_channels + (self.out_channels if self.bias else 0)

    @property
    def macs(self) -> int:
        return self.in_channels * self.out_channels

    def tensors(self) -> dict[str, Shape]:
        weight = {"weight": (self.out_channels, self.in_channels)}
        return weight | ({"bias": (self.out_channels,)} if self.bias else {})


@dataclass(frozen=True, kw_only=True)
class Dropout(Op):
    """Dropout with probability ``p`` in training; the identity at inference."""

    kind: ClassVar[str] = "dropout"

    p: float


@dataclass(frozen=True, kw_only=True)
class Affine(Op):
    """``x * scale + shift`` per channel: an inference-mode BN after folding (buffers ``scale``, ``shift``)."""

    kind: ClassVar[str] = "affine"

    def tensors(self) -> dict[str, Shape]:
        shape = (self.in_channels,) + (1,) * self.rank
        return {"scale": shape, "shift": shape}


@dataclass(frozen=True, kw_only=True)
class Clamp(Op):
    """``min(max(x, lo), hi)`` per channel: a BN-ReLU whose affine part moved into the next 1x1 conv."""

    kind: ClassVar[str] = "clamp"

    def tensors(self) -> dict[str, Shape]:
        shape = (self.in_channels,) + (1,) * self.rank
        return {"lo": shape, "hi": shape}


# ----------------------------------------------------------------------------- layers


@dataclass(frozen=True)
class Layer:
    """A node of the graph: a named group of ops that the dense connections are about.

    ``block`` is the dense block a dense layer belongs to, or the block a transition follows.
    """

    name: str
    kind: LayerKind
    stage: str
    ops: tuple[Op, ...]
    block: int | None = None

    @property
    def in_channels(self) -> int:
        return self.ops[0].in_channels

    @property
    def out_channels(self) -> int:
        return self.ops[-1].out_channels

    @property
    def in_size(self) -> Shape:
        return self.ops[0].in_size

    @property
    def out_size(self) -> Shape:
        return self.ops[-1].out_size

    @property
    def params(self) -> int:
        return sum(op.params for op in self.ops)

    @property
    def macs(self) -> int:
        return sum(op.macs for op in self.ops)

    def op(self, name: str) -> Op:
        """The op called ``name`` (``conv1``); KeyError if the layer has none."""
        for op in self.ops:
            if op.name == name:
                return op
        raise KeyError(f"{self.name} has no op {name!r}")

    def with_ops(self, ops: Iterable[Op]) -> Layer:
        return replace(self, ops=tuple(ops))

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "stage": self.stage,
            "block": self.block,
            "in_channels": self.in_channels,
            "out_channels": self.out_channels,
            "in_size": list(self.in_size),
            "out_size": list(self.out_size),
            "params": self.params,
            "macs": self.macs,
        }


@dataclass(frozen=True)
class ModelInfo:
    """Facts about the whole network that no single layer holds.

    ``inference_only`` is set by passes that are exact only at inference (BN folding): a
    backend must not build a trainable model from such an IR.
    """

    name: str
    description: str
    source: str
    input_channels: int
    input_size: Shape
    num_classes: int
    passes: tuple[str, ...] = ()
    inference_only: bool = False


Lowered = list[tuple[Layer, list[str]]]


@dataclass(frozen=True)
class IR:
    """A compiled network: the frozen layer graph, model-wide facts, and the compiler's warnings."""

    info: ModelInfo
    graph: nx.DiGraph = field(repr=False)
    warnings: tuple[Problem, ...] = ()

    # --- reading
    def layers(self) -> Iterator[Layer]:
        """Every layer in execution order."""
        for _, layer in self.graph.nodes(data="layer"):
            yield layer

    def layer(self, name: str) -> Layer:
        """The layer called ``name`` (a module path such as ``features.denseblock1.denselayer3``)."""
        self._check_name(name)
        layer: Layer = self.graph.nodes[name]["layer"]
        return layer

    def inputs(self, name: str) -> list[str]:
        """The layers whose outputs ``name`` concatenates, in concatenation order."""
        self._check_name(name)
        edges = sorted(self.graph.in_edges(name, data="slot"), key=lambda e: e[2])
        return [source for source, _, _ in edges]

    def _check_name(self, name: str) -> None:
        """A KeyError that says what the layers are called (networkx's says only the name)."""
        if name not in self.graph:
            first = next(iter(self.graph), "")
            raise KeyError(f"{name!r} is not a layer of {self.info.name}; layers are named as modules, e.g. {first!r}")

    def lowered(self) -> Lowered:
        """Every layer with its inputs, in order: what :func:`build_ir` takes, for passes to edit."""
        return [(layer, self.inputs(layer.name)) for layer in self.layers()]

    def stages(self) -> dict[str, list[Layer]]:
        """Layers grouped by stage (``stem``, ``denseblock1``, ``transition1``, ..., ``head``), in order."""
        out: dict[str, list[Layer]] = {}
        for layer in self.layers():
            out.setdefault(layer.stage, []).append(layer)
        return out

    def blocks(self) -> list[list[Layer]]:
        """The dense layers of each block, in block order."""
        out: dict[int, list[Layer]] = {}
        for layer in self.layers():
            if layer.kind == "dense_layer" and layer.block is not None:
                out.setdefault(layer.block, []).append(layer)
        return [out[b] for b in sorted(out)]

    @property
    def rank(self) -> int:
        return len(self.info.input_size)

    @property
    def params(self) -> int:
        return sum(layer.params for layer in self.layers())

    @property
    def macs(self) -> int:
        return sum(layer.macs for layer in self.layers())

    def ops(self) -> Iterator[Op]:
        """Every op of every layer, in execution order."""
        for layer in self.layers():
            yield from layer.ops

    def state_shapes(self) -> dict[str, Shape]:
        """Every state_dict key the network's modules have, with its shape, in module order."""
        return {f"{op.path}.{key}": shape for op in self.ops() for key, shape in op.tensors().items()}

    @property
    def output(self) -> Layer:
        return self.layer(next(reversed(list(self.graph.nodes))))

    def with_layers(self, lowered: Lowered, **info: Any) -> IR:
        """A new IR of ``lowered`` with ``info`` fields replaced; this one is left as it is."""
        return build_ir(replace(self.info, **info), lowered, self.warnings)

    def totals_json(self) -> dict[str, Any]:
        """The model-wide facts and costs, as plain data (the head of every JSON view)."""
        return {
            "name": self.info.name,
            "description": self.info.description,
            "input": {"channels": self.info.input_channels, "size": list(self.info.input_size)},
            "num_classes": self.info.num_classes,
            "passes": list(self.info.passes),
            "params": self.params,
            "macs": self.macs,
            "flops": 2 * self.macs,
        }

    def to_json(self) -> dict[str, Any]:
        """A plain-data view of the whole graph (``build --to json``)."""
        return {
            **self.totals_json(),
            "layers": [
                {
                    **layer.to_json(),
                    "name": layer.name,
                    "inputs": self.inputs(layer.name),
                    "ops": [op.to_json() for op in layer.ops],
                }
                for layer in self.layers()
            ],
        }


def build_ir(info: ModelInfo, lowered: Sequence[tuple[Layer, Sequence[str]]], warnings: Iterable[Problem] = ()) -> IR:
    """The immutable IR of ``lowered``: each layer fed by the concatenation of its inputs, in order."""
    graph = nx.DiGraph()
    for layer, inputs in lowered:
        graph.add_node(layer.name, layer=layer)
        for slot, source in enumerate(inputs):
            graph.add_edge(source, layer.name, slot=slot)
    return IR(info, nx.freeze(graph), tuple(warnings))


# ----------------------------------------------------------------------------- invariants


def check_ir(ir: IR) -> list[str]:
    """Every broken invariant of ``ir``, each naming its layer; empty when the graph is sound.

    The invariants: the channels flowing into a layer sum to its in_channels, in consecutive
    concatenation slots, at its input size; inside a layer each op consumes what the previous one
    produced; every window has one entry per spatial axis; every feature map keeps a pixel.
    """
    broken = []
    for layer in ir.layers():
        sources = [ir.layer(name) for name in ir.inputs(layer.name)]
        if sources:
            total = sum(source.out_channels for source in sources)
            if total != layer.in_channels:
                broken.append(f"{layer.name}: inputs carry {total} channels, the layer takes {layer.in_channels}")
            broken += [
                f"{layer.name}: {s.name} gives size {s.out_size}, the layer takes {layer.in_size}"
                for s in sources
                if s.out_size != layer.in_size
            ]
        slots = sorted(slot for _, _, slot in ir.graph.in_edges(layer.name, data="slot"))
        if slots != list(range(len(slots))):
            broken.append(f"{layer.name}: concatenation slots are not 0..{len(slots) - 1}")
        broken += _check_ops(layer)
    return broken


def _check_ops(layer: Layer) -> list[str]:
    if not layer.ops:
        return [f"{layer.name}: no ops"]
    broken = []
    for before, after in zip(layer.ops, layer.ops[1:], strict=False):
        if before.out_channels != after.in_channels or before.out_size != after.in_size:
            broken.append(
                f"{after.path}: takes {after.in_channels}x{after.in_size} but {before.path} gives "
                f"{before.out_channels}x{before.out_size}"
            )
    for op in layer.ops:
        windows = [getattr(op, name) for name in ("kernel", "stride", "padding") if hasattr(op, name)]
        if any(len(w) != op.rank for w in windows):
            broken.append(f"{op.path}: a window of rank {[len(w) for w in windows]} on a rank-{op.rank} input")
    broken += [f"{op.path}: {op.out_channels} output channels" for op in layer.ops if op.out_channels < 1]
    if min(layer.out_size) < 1:
        broken.append(f"{layer.name}: output size {layer.out_size}")
    return broken
