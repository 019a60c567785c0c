"""IR to ONNX, generated node by node with the ``onnx`` package (no tracing).

Node names are the module paths (``features.denseblock1.denselayer2.conv1``), each dense layer's
concatenation is ``<layer>.cat``, initialisers are named as the state_dict keys, and BN is emitted
in inference form (``BatchNormalization`` with the running statistics). The input is ``input``
``[batch, C, H, W]`` with a symbolic batch; the output is ``logits`` ``[batch, num_classes]``.
The same IR and weights give byte-identical files.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .._version import __version__
from ..ir import IR, Layer, Op
from ..outputs import write_atomic
from ..schema import Spec

INPUT, OUTPUT = "input", "logits"
MIN_OPSET = 13


class _Emitter:
    """Collects nodes and initialisers while walking the IR."""

    def __init__(self, state: Mapping[str, Any]) -> None:
        self.state = state
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.outputs: dict[str, str] = {}  # layer name -> name of the tensor it produces

    def weight(self, op: Op, key: str) -> str:
        name = f"{op.path}.{key}"
        array = np.ascontiguousarray(_numpy(self.state[name]), dtype=np.float32)
        self.initializers.append(numpy_helper.from_array(array, name))
        return name

    def layer(self, layer: Layer, sources: list[str], is_last: bool) -> None:
        inputs = [self.outputs[source] for source in sources]
        if not inputs:
            x = INPUT
        elif len(inputs) == 1:
            x = inputs[0]
        else:
            x = f"{layer.name}.cat"
            self.nodes.append(helper.make_node("Concat", inputs, [x], name=x, axis=1))
        emitted = [op for op in layer.ops if op.kind != "dropout"]  # identity at inference
        for i, op in enumerate(emitted):
            out = OUTPUT if is_last and i == len(emitted) - 1 else op.path
            self.nodes.append(self.node(op, x, out))
            x = out
        self.outputs[layer.name] = x

    def node(self, op: Op, x: str, out: str) -> onnx.NodeProto:
        name = op.path
        if op.kind == "conv":
            inputs = [x, self.weight(op, "weight")] + ([self.weight(op, "bias")] if op.bias else [])
            k, s, p = op.kernel, op.stride, op.padding
            return helper.make_node("Conv", inputs, [out], name=name, kernel_shape=[k, k], strides=[s, s], pads=[p] * 4)
        if op.kind == "batchnorm":
            keys = ("weight", "bias", "running_mean", "running_var")
            return helper.make_node(
                "BatchNormalization", [x, *(self.weight(op, key) for key in keys)], [out], name=name, epsilon=1e-5
            )
        if op.kind == "relu":
            return helper.make_node("Relu", [x], [out], name=name)
        if op.kind in ("maxpool", "avgpool"):
            k, s, p = op.kernel, op.stride, op.padding
            kind = "MaxPool" if op.kind == "maxpool" else "AveragePool"
            return helper.make_node(kind, [x], [out], name=name, kernel_shape=[k, k], strides=[s, s], pads=[p] * 4)
        if op.kind == "global_avgpool":
            return helper.make_node("GlobalAveragePool", [x], [out], name=name)
        if op.kind == "flatten":
            return helper.make_node("Flatten", [x], [out], name=name, axis=1)
        if op.kind == "linear":
            inputs = [x, self.weight(op, "weight"), self.weight(op, "bias")]
            return helper.make_node("Gemm", inputs, [out], name=name, transB=1)
        raise ValueError(f"{op.path}: no ONNX node for op kind {op.kind!r}")


def _numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):
        return value.detach().cpu().float().numpy()  # type: ignore[no-any-return]
    return np.asarray(value)


def to_onnx(ir: IR, state: Mapping[str, Any], *, opset: int = 17) -> onnx.ModelProto:
    """The ONNX model of ``ir`` with the weights in ``state`` (a state_dict, tensors or arrays)."""
    if opset < MIN_OPSET:
        raise ValueError(f"opset {opset} is not supported; use {MIN_OPSET} or later")
    emitter = _Emitter(state)
    layers = list(ir.layers())
    for i, layer in enumerate(layers):
        emitter.layer(layer, ir.inputs(layer.name), is_last=i == len(layers) - 1)
    c, (h, w) = ir.info.input_channels, ir.info.input_size
    graph = helper.make_graph(
        emitter.nodes,
        ir.info.name,
        [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, ["batch", c, h, w])],
        [helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, ["batch", ir.info.num_classes])],
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


def export_bytes(ir: IR, state: Mapping[str, Any], *, opset: int = 17, optimize: bool = False) -> bytes:
    """The serialised model; with ``optimize``, the optimisation passes run first (weights rewritten)."""
    if optimize:
        from ..passes import optimize_with_state

        ir, state = optimize_with_state(ir, state)
    data: bytes = to_onnx(ir, state, opset=opset).SerializeToString(deterministic=True)
    return data


def export_onnx(
    spec: Spec | IR | str | os.PathLike[str],
    path: str | os.PathLike[str],
    *,
    state_dict: Mapping[str, Any] | None = None,
    opset: int = 17,
    optimize: bool = False,
    seed: int = 0,
) -> Path:
    """Write the ONNX model of ``spec`` to ``path`` atomically and return the path.

    Args:
        spec: a Spec, a spec file, a preset name, or a compiled IR.
        state_dict: the weights (checked against the spec); default: the torch backend's
            initialisation with ``seed``.
        opset: the ONNX opset, 13 or later.
        optimize: apply the optimisation passes (BN folding, pool before the transition conv).
    """
    from ..errors import SpecError
    from ..weights import check_state_dict, initial_state_dict
    from .torch_module import as_ir

    ir = as_ir(spec)
    if state_dict is None:
        state_dict = initial_state_dict(ir, seed)
    else:
        problems = check_state_dict(state_dict, ir)
        if problems:
            raise SpecError(problems)
    data = export_bytes(ir, state_dict, opset=opset, optimize=optimize)
    target = Path(path)
    write_atomic(target, data)
    return target
