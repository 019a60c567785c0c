"""The intermediate representation: layers and dense connections in a ``networkx.DiGraph``.

Two levels. The graph's nodes are *layers* (each stem piece, each dense layer, each transition,
the final norm, the classifier), keyed by their torchvision module path; its edges are the
connections between them, the dense connections included, each carrying its channel count and
its ``slot`` in the receiving layer's concatenation. Each layer holds its ordered *ops*
(``norm1: BatchNorm``, ``relu1``, ``conv1: Conv 1x1``, ...) named as the modules will be, so that
backends emit ops one by one and passes rewrite op lists without touching the backends.

Node attributes (for users of networkx): ``layer`` (the :class:`Layer`), ``kind``, ``stage``,
``block``, ``in_channels``, ``out_channels``, ``in_size``, ``out_size``, ``params`` and ``macs``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import networkx as nx

from .errors import Problem

Size = tuple[int, int]
OpKind = Literal["conv", "batchnorm", "relu", "maxpool", "avgpool", "dropout", "global_avgpool", "flatten", "linear"]
LayerKind = Literal["conv", "norm", "relu", "pool", "dense_layer", "transition", "classifier"]


def pooled(size: int, kernel: int, stride: int, padding: int) -> int:
    """Output length of a convolution or pooling window along one axis (floor mode)."""
    return (size + 2 * padding - kernel) // stride + 1


@dataclass(frozen=True)
class Op:
    """One module of a layer. ``path`` is its full module path (the state_dict prefix)."""

    path: str
    kind: OpKind
    in_channels: int
    out_channels: int
    in_size: Size
    kernel: int = 1
    stride: int = 1
    padding: int = 0
    bias: bool = False
    p: float = 0.0

    @property
    def name(self) -> str:
        """The op's name inside its layer (``conv1``)."""
        return self.path.rsplit(".", 1)[-1]

    @property
    def out_size(self) -> Size:
        if self.kind in ("conv", "maxpool", "avgpool"):
            h, w = self.in_size
            k, s, p = self.kernel, self.stride, self.padding
            return (pooled(h, k, s, p), pooled(w, k, s, p))
        if self.kind in ("global_avgpool", "flatten", "linear"):
            return (1, 1)
        return self.in_size

    @property
    def params(self) -> int:
        """Learnable parameters; BN running statistics are buffers, not counted."""
        if self.kind == "conv":
            return self.out_channels * self.in_channels * self.kernel**2 + (self.out_channels if self.bias else 0)
        if self.kind == "batchnorm":
            return 2 * self.in_channels
        if self.kind == "linear":
            return self.in_channels * self.out_channels + self.out_channels
        return 0

    def tensors(self) -> dict[str, tuple[int, ...]]:
        """The op's state_dict entries (``weight``, ``running_mean``, ...) and their shapes."""
        c_in, c_out = self.in_channels, self.out_channels
        if self.kind == "conv":
            shapes: dict[str, tuple[int, ...]] = {"weight": (c_out, c_in, self.kernel, self.kernel)}
            return shapes | ({"bias": (c_out,)} if self.bias else {})
        if self.kind == "batchnorm":
            return {
                "weight": (c_in,),
                "bias": (c_in,),
                "running_mean": (c_in,),
                "running_var": (c_in,),
                "num_batches_tracked": (),
            }
        if self.kind == "linear":
            return {"weight": (c_out, c_in), "bias": (c_out,)}
        return {}

    @property
    def macs(self) -> int:
        """Multiply-accumulates of convolutions and linear layers; other ops count 0."""
        if self.kind == "conv":
            h, w = self.out_size
            return self.out_channels * h * w * self.in_channels * self.kernel**2
        if self.kind == "linear":
            return self.in_channels * self.out_channels
        return 0


def conv(path: str, c_in: int, c_out: int, size: Size, kernel: int, stride: int = 1, padding: int = 0) -> Op:
    return Op(path, "conv", c_in, c_out, size, kernel, stride, padding)


def norm(path: str, channels: int, size: Size) -> Op:
    return Op(path, "batchnorm", channels, channels, size)


def relu(path: str, channels: int, size: Size) -> Op:
    return Op(path, "relu", channels, channels, size)


def pool(path: str, kind: OpKind, channels: int, size: Size, kernel: int, stride: int, padding: int = 0) -> Op:
    return Op(path, kind, channels, channels, size, kernel, stride, padding)


@dataclass(frozen=True)
class Layer:
    """A node of the graph: a named group of ops that the dense connections are about."""

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
    def in_size(self) -> Size:
        return self.ops[0].in_size

    @property
    def out_size(self) -> Size:
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

    def with_ops(self, ops: tuple[Op, ...]) -> Layer:
        return replace(self, ops=ops)


@dataclass(frozen=True)
class ModelInfo:
    """Facts about the whole network that no single layer holds."""

    name: str
    description: str
    source: str
    input_channels: int
    input_size: Size
    num_classes: int
    passes: tuple[str, ...] = ()


@dataclass
class IR:
    """A compiled network: the layer graph plus model-wide facts and the compiler's warnings."""

    info: ModelInfo
    graph: nx.DiGraph = field(default_factory=nx.DiGraph)
    warnings: tuple[Problem, ...] = ()

    # --- building
    def add_layer(self, layer: Layer, inputs: list[str] | None = None) -> None:
        """Add ``layer`` fed by the concatenation of ``inputs``, in order."""
        self.graph.add_node(layer.name, **_node_attrs(layer))
        for slot, source in enumerate(inputs or []):
            self.graph.add_edge(source, layer.name, channels=self.layer(source).out_channels, slot=slot)

    def replace_layer(self, layer: Layer) -> None:
        """Swap in a rewritten layer (same name and connections), keeping the attributes in step."""
        self.graph.nodes[layer.name].update(_node_attrs(layer))

    def copy(self) -> IR:
        return IR(self.info, self.graph.copy(), self.warnings)

    # --- reading
    def layers(self) -> Iterator[Layer]:
        """Every layer in execution order."""
        for _, data in self.graph.nodes(data=True):
            yield data["layer"]

    def layer(self, name: str) -> Layer:
        layer: Layer = self.graph.nodes[name]["layer"]
        return layer

    def inputs(self, name: str) -> list[str]:
        """The layers whose outputs ``name`` concatenates, in concatenation order."""
        edges = sorted(self.graph.in_edges(name, data="slot"), key=lambda e: e[2])
        return [source for source, _, _ in edges]

    def stages(self) -> dict[str, list[Layer]]:
        """Layers grouped by stage (``stem``, ``denseblock1``, ``transition1``, ..., ``head``), in order."""
        out: dict[str, list[Layer]] = {}
        for layer in self.layers():
            out.setdefault(layer.stage, []).append(layer)
        return out

    def blocks(self) -> list[list[Layer]]:
        """The dense layers of each block, in order."""
        return [layers for stage, layers in self.stages().items() if stage.startswith("denseblock")]

    @property
    def params(self) -> int:
        return sum(layer.params for layer in self.layers())

    @property
    def macs(self) -> int:
        return sum(layer.macs for layer in self.layers())

    def state_shapes(self) -> dict[str, tuple[int, ...]]:
        """Every state_dict key the network's modules have, with its shape, in module order."""
        return {
            f"{op.path}.{key}": shape
            for layer in self.layers()
            for op in layer.ops
            for key, shape in op.tensors().items()
        }

    @property
    def output(self) -> Layer:
        return self.layer(next(reversed(list(self.graph.nodes))))

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
                    **{k: v for k, v in _node_attrs(layer).items() if k != "layer"},
                    "name": layer.name,
                    "inputs": self.inputs(layer.name),
                    "ops": [_op_json(op) for op in layer.ops],
                }
                for layer in self.layers()
            ],
        }


def _node_attrs(layer: Layer) -> dict[str, Any]:
    return {
        "layer": layer,
        "kind": layer.kind,
        "stage": layer.stage,
        "block": layer.block,
        "in_channels": layer.in_channels,
        "out_channels": layer.out_channels,
        "in_size": layer.in_size,
        "out_size": layer.out_size,
        "params": layer.params,
        "macs": layer.macs,
    }


def _op_json(op: Op) -> dict[str, Any]:
    out: dict[str, Any] = {"path": op.path, "kind": op.kind, "in_channels": op.in_channels}
    out["out_channels"] = op.out_channels
    if op.kind in ("conv", "maxpool", "avgpool"):
        out |= {"kernel": op.kernel, "stride": op.stride, "padding": op.padding}
    if op.kind == "conv":
        out["bias"] = op.bias
    if op.kind == "dropout":
        out["p"] = op.p
    out |= {"out_size": list(op.out_size), "params": op.params, "macs": op.macs}
    return out
