"""IR to ONNX, generated node by node with the ``onnx`` package (no tracing).

Each op kind maps to a node emitter through :data:`NODES` (one entry per kind, so a new op kind is
one :func:`register_node` call). Node names are the module paths
(``features.denseblock1.denselayer2.conv1``), each dense layer's concatenation is
``<layer>.cat``, initialisers are named as the state_dict keys, and batch norm is emitted in
inference form (``BatchNormalization`` with the running statistics and the IR's eps). The input is
``input`` ``[batch, C, *size]`` with a symbolic batch; the output is ``logits`` ``[batch, classes]``.
The same IR and weights give byte-identical files.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .._version import __version__
from ..ir import IR, Act, Affine, Clamp, Conv, Dropout, Flatten, GlobalPool, Layer, Linear, Norm, Op, Pool

INPUT, OUTPUT = "input", "logits"
MIN_OPSET = 13


class Emitter:
    """Collects nodes and initialisers while walking the IR."""

    def __init__(self, state: Mapping[str, Any], opset: int) -> None:
        self.state = state
        self.opset = opset
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.outputs: dict[str, str] = {}  # layer name -> name of the tensor it produces

    def weight(self, op: Op, key: str) -> str:
        """An initialiser from the state_dict entry ``<op path>.<key>``; returns its name."""
        name = f"{op.path}.{key}"
        array = np.ascontiguousarray(_numpy(self.state[name]), dtype=np.float32)
        self.initializers.append(numpy_helper.from_array(array, name))
        return name

    def vector(self, op: Op, key: str) -> str:
        """A per-channel state entry (stored as ``(C, 1, ...)``) as a flat initialiser."""
        name = f"{op.path}.{key}"
        array = np.ascontiguousarray(_numpy(self.state[name]), dtype=np.float32).reshape(-1)
        self.initializers.append(numpy_helper.from_array(array, name))
        return name

    def constant(self, op: Op, key: str, value: float, length: int) -> str:
        name = f"{op.path}.{key}"
        self.initializers.append(numpy_helper.from_array(np.full(length, value, dtype=np.float32), name))
        return name

    def add(self, op_type: str, inputs: list[str], output: str, name: str, **attrs: Any) -> None:
        self.nodes.append(helper.make_node(op_type, inputs, [output], name=name, **attrs))

    def layer(self, layer: Layer, sources: list[str], is_last: bool) -> None:
        inputs = [self.outputs[source] for source in sources]
        if not inputs:
            x = INPUT
        elif len(inputs) == 1:
            x = inputs[0]
        else:
            x = f"{layer.name}.cat"
            self.add("Concat", inputs, x, x, axis=1)
        emitted = [op for op in layer.ops if not isinstance(op, Dropout)]  # identity at inference
        for i, op in enumerate(emitted):
            out = OUTPUT if is_last and i == len(emitted) - 1 else op.path
            node_emitter(op)(self, op, x, out)
            x = out
        self.outputs[layer.name] = x


NodeEmitter = Callable[[Emitter, Any, str, str], None]


def _window(op: Conv | Pool) -> dict[str, Any]:
    return {"kernel_shape": list(op.kernel), "strides": list(op.stride), "pads": [*op.padding, *op.padding]}


def _conv(e: Emitter, op: Conv, x: str, out: str) -> None:
    inputs = [x, e.weight(op, "weight")] + ([e.weight(op, "bias")] if op.bias else [])
    groups = {"group": op.groups} if op.groups != 1 else {}
    e.add("Conv", inputs, out, op.path, **_window(op), **groups)


def _norm(e: Emitter, op: Norm, x: str, out: str) -> None:
    keys = ("weight", "bias", "running_mean", "running_var")
    e.add("BatchNormalization", [x, *(e.weight(op, key) for key in keys)], out, op.path, epsilon=op.eps)


ACTIVATIONS: dict[str, Callable[[Emitter, Act, str, str], None]] = {
    "relu": lambda e, op, x, out: e.add("Relu", [x], out, op.path),
}
"""Activation kind to its node(s); an activation an opset lacks is emitted as its decomposition."""


def _act(e: Emitter, op: Act, x: str, out: str) -> None:
    ACTIVATIONS[op.act](e, op, x, out)


def _pool(e: Emitter, op: Pool, x: str, out: str) -> None:
    e.add("MaxPool" if op.pool == "max" else "AveragePool", [x], out, op.path, **_window(op))


def _global_pool(e: Emitter, op: GlobalPool, x: str, out: str) -> None:
    e.add("GlobalAveragePool" if op.pool == "avg" else "GlobalMaxPool", [x], out, op.path)


def _linear(e: Emitter, op: Linear, x: str, out: str) -> None:
    inputs = [x, e.weight(op, "weight")] + ([e.weight(op, "bias")] if op.bias else [])
    e.add("Gemm", inputs, out, op.path, transB=1)


def _affine(e: Emitter, op: Affine, x: str, out: str) -> None:
    """As BatchNormalization with mean 0, variance 1 and eps 0: exactly ``x * scale + shift``, and the
    kernel onnxruntime fuses with a following ReLU."""
    c = op.in_channels
    inputs = [
        x,
        e.vector(op, "scale"),
        e.vector(op, "shift"),
        e.constant(op, "zero", 0.0, c),
        e.constant(op, "one", 1.0, c),
    ]
    e.add("BatchNormalization", inputs, out, op.path, epsilon=0.0)


def _clamp(e: Emitter, op: Clamp, x: str, out: str) -> None:
    e.add("Max", [x, e.weight(op, "lo")], f"{op.path}.above", f"{op.path}.max")
    e.add("Min", [f"{op.path}.above", e.weight(op, "hi")], out, op.path)


NODES: dict[str, NodeEmitter] = {
    Conv.kind: _conv,
    Norm.kind: _norm,
    Act.kind: _act,
    Pool.kind: _pool,
    GlobalPool.kind: _global_pool,
    Flatten.kind: lambda e, op, x, out: e.add("Flatten", [x], out, op.path, axis=1),
    Linear.kind: _linear,
    Affine.kind: _affine,
    Clamp.kind: _clamp,
}
"""Op kind to the function that appends its ONNX node(s)."""


def register_node(kind: str, emitter: NodeEmitter) -> None:
    """Teach the ONNX backend a new op kind: ``emitter(e, op, x, out)`` appends nodes from x to out."""
    NODES[kind] = emitter


def node_emitter(op: Op) -> NodeEmitter:
    try:
        return NODES[op.kind]
    except KeyError:
        raise ValueError(f"{op.path}: the ONNX backend has no node for op kind {op.kind!r}") from None


def _numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):
        return value.detach().cpu().float().numpy()  # type: ignore[no-any-return]
    return np.asarray(value)


def to_onnx(ir: IR, state: Mapping[str, Any], *, opset: int = 17) -> onnx.ModelProto:
    """The ONNX model of ``ir`` with the weights in ``state`` (a state_dict, tensors or arrays)."""
    if opset < MIN_OPSET:
        raise ValueError(f"opset {opset} is not supported; use {MIN_OPSET} or later")
    emitter = Emitter(state, opset)
    layers = list(ir.layers())
    for i, layer in enumerate(layers):
        emitter.layer(layer, ir.inputs(layer.name), is_last=i == len(layers) - 1)
    graph = helper.make_graph(
        emitter.nodes,
        ir.info.name,
        [
            helper.make_tensor_value_info(
                INPUT, TensorProto.FLOAT, ["batch", ir.info.input_channels, *ir.info.input_size]
            )
        ],
        [helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, ["batch", ir.output.out_channels])],
        emitter.initializers,
    )
    opsets = [helper.make_opsetid("", opset)]
    model = helper.make_model(
        graph,
        opset_imports=opsets,
        ir_version=helper.find_min_ir_version_for(opsets),
        producer_name="densenet-spec",
        producer_version=__version__,
        doc_string=ir.info.description,
    )
    helper.set_model_props(
        model,
        {
            "densenet_spec.name": ir.info.name,
            "densenet_spec.version": __version__,
            "densenet_spec.source": ir.info.source,
            "densenet_spec.passes": ",".join(ir.info.passes),
        },
    )
    return model


def export_bytes(ir: IR, state: Mapping[str, Any], *, opset: int = 17) -> bytes:
    """The serialised model of ``ir`` with ``state``."""
    data: bytes = to_onnx(ir, state, opset=opset).SerializeToString(deterministic=True)
    return data


def emit(ir: IR, state: Mapping[str, Any] | None, options: Mapping[str, Any]) -> bytes:
    """The ``--to onnx`` target; the front door supplies ``state`` (and has run the passes)."""
    if state is None:
        raise ValueError("the ONNX backend needs weights")
    return export_bytes(ir, state, opset=options.get("opset", 17))
