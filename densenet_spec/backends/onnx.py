"""IR to ONNX, generated node by node with the ``onnx`` package (no tracing).

Each op kind maps to a node emitter through :data:`NODES` (one entry per kind, so a new op kind is
one :func:`register_node` call). Node names are the module paths
(``features.denseblock1.denselayer2.conv1``), each dense layer's concatenation is
``<layer>.cat``, initialisers are named as the state_dict keys, and batch norm is emitted in
inference form (``BatchNormalization`` with the running statistics and the IR's eps). The input is
``input`` ``[batch, C, *size]`` with a symbolic batch; the output is ``logits`` ``[batch, classes]``.
The same IR and weights give byte-identical files.

What ONNX cannot hold is refused before any tensor exists (:func:`export_problems`): a model file
is one protobuf message, which cannot exceed 2 GiB, and its dimensions are int64.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any, NamedTuple

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .._version import __version__
from ..errors import Problem, SpecError
from ..ir import IR, Act, Affine, Blur, Clamp, Conv, Dropout, Flatten, GlobalPool, Layer, Linear, Norm, Op, Pool
from ..summary import format_count, format_plain
from .taps import Tap, feature_taps, select

INPUT, OUTPUT = "input", "logits"
POOLED = "pooled"  # the output of a network without a classifier (num_classes 0): pooled features
MIN_OPSET = 13
DEFAULT_OPSET = 17
INT64_MAX = 2**63 - 1
MAX_WEIGHT_BYTES = 1_900_000_000
"""float32 weights a model file may hold: protobuf's 2 GiB (2**31 - 1 bytes) for the whole message,
less a margin for the graph itself (node names, attributes: about a kilobyte a layer)."""


def newest_opset() -> int:
    """The newest opset the installed onnx knows; a later one fails deep inside onnx's helper
    (``Unsupported opset-version``, or ``Value out of range`` past int64), so it is refused first."""
    return int(onnx.defs.onnx_opset_version())


def check_opset(opset: int) -> None:
    """ValueError, naming the range, unless ``opset`` is one this backend can write with this onnx.

    Shared by ``build --opset`` (a usage error) and :func:`~densenet_spec.export_onnx`.
    """
    if isinstance(opset, bool) or not isinstance(opset, int):
        raise TypeError(f"opset must be an integer, not {opset!r}")
    newest = newest_opset()
    if not MIN_OPSET <= opset <= newest:
        raise ValueError(
            f"opset {opset} is out of range: with onnx {onnx.__version__} installed, the opsets are "
            f"{MIN_OPSET} to {newest} (default {DEFAULT_OPSET})"
        )


class Refusal(NamedTuple):
    """Why the ONNX backend cannot write an IR: the spec field at fault (dotted path parts) and why."""

    path: tuple[str, ...]
    message: str


def export_problems(ir: IR) -> list[Refusal]:
    """What in ``ir`` an ONNX file cannot hold, from the IR's shapes alone (no tensor is made).

    Checked up front because otherwise the failure comes late and unreadable: protobuf refuses to
    serialise more than 2 GiB only after every initialiser is built (gigabytes of memory, minutes),
    and a dimension past int64 is a ``ValueError: Value out of range`` from deep inside onnx.
    """
    problems = _dimension_problems(ir)
    elements = sum(math.prod(shape) for shape in ir.state_shapes().values())
    if 4 * elements > MAX_WEIGHT_BYTES:
        problems.append(
            Refusal(
                (),
                f"an ONNX file cannot hold this network: its {format_count(elements)} weights and statistics take "
                f"{4 * elements / 10**9:,.1f} GB as float32, and an ONNX model is one protobuf message of at most "
                "2 GiB; use --to torch (PyTorch source) or a smaller network",
            )
        )
    return problems


def _dimension_problems(ir: IR) -> list[Refusal]:
    """Dimensions of the graph's input and output that do not fit ONNX's int64."""
    dims = [
        (("input", "channels"), ir.info.input_channels),
        *((("input", "size"), n) for n in ir.info.input_size),
        (("num_classes",), ir.output.out_channels),
    ]
    out: list[Refusal] = []
    for path, value in dims:
        if value > INT64_MAX and all(r.path != path for r in out):
            message = (
                f"{format_plain(value)} is too large for an ONNX model, whose dimensions are int64 "
                "(at most 2**63 - 1, about 9.2e18)"
            )
            out.append(Refusal(path, message))
    return out


def refuse_unexportable(ir: IR) -> None:
    """Raise SpecError (without a file location: a backend sees only the IR) if ONNX cannot hold ``ir``."""
    problems = export_problems(ir)
    if problems:
        raise SpecError(Problem(None, ".".join(p.path), p.message) for p in problems)


class Emitter:
    """Collects nodes and initialisers while walking the IR."""

    def __init__(self, state: Mapping[str, Any], opset: int) -> None:
        self.state = state
        self.opset = opset
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.outputs: dict[str, str] = {}  # layer name -> name of the tensor it produces
        self.concats: dict[tuple[str, ...], str] = {}  # concatenated tensors -> the Concat's output
        self.output = OUTPUT  # the name of the last layer's output

    def weight(self, op: Op, key: str) -> str:
        """An initialiser from the state_dict entry ``<op path>.<key>``; returns its name."""
        name = f"{op.path}.{key}"
        array = np.ascontiguousarray(_numpy(self.state[name]), dtype=np.float32)
        self.initializers.append(numpy_helper.from_array(array, name))
        return name

    def vector(self, op: Op, key: str, rank: int = 0) -> str:
        """A per-channel state entry as an initialiser of shape ``(C,)`` plus ``rank`` ones, to
        broadcast over ``(N, C, *size)``."""
        name = f"{op.path}.{key}"
        array = np.ascontiguousarray(_numpy(self.state[name]), dtype=np.float32).reshape(-1, *(1,) * rank)
        self.initializers.append(numpy_helper.from_array(array, name))
        return name

    def scalar(self, name: str, value: float) -> str:
        self.initializers.append(numpy_helper.from_array(np.array(value, dtype=np.float32), name))
        return name

    def int64(self, name: str, values: list[int]) -> str:
        self.initializers.append(numpy_helper.from_array(np.array(values, dtype=np.int64), name))
        return name

    def constant(self, op: Op, key: str, value: float, length: int) -> str:
        name = f"{op.path}.{key}"
        self.initializers.append(numpy_helper.from_array(np.full(length, value, dtype=np.float32), name))
        return name

    def add(self, op_type: str, inputs: list[str], output: str, name: str, **attrs: Any) -> None:
        self.nodes.append(helper.make_node(op_type, inputs, [output], name=name, **attrs))

    def concat(self, sources: Sequence[str], name: str) -> str:
        """The concatenation of ``sources``' outputs, made once (a feature tap and the next layer share it)."""
        inputs = [self.outputs[source] for source in sources]
        if not inputs:
            return INPUT
        if len(inputs) == 1:
            return inputs[0]
        key = tuple(inputs)
        if key not in self.concats:
            self.add("Concat", inputs, name, name, axis=1)
            self.concats[key] = name
        return self.concats[key]

    def layer(self, layer: Layer, sources: list[str], is_last: bool) -> None:
        x = self.concat(sources, f"{layer.name}.cat")
        emitted = [op for op in layer.ops if not isinstance(op, Dropout)]  # identity at inference
        for i, op in enumerate(emitted):
            out = self.output if is_last and i == len(emitted) - 1 else op.path
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


def _affine_params(e: Emitter, op: Norm) -> tuple[str, str]:
    """The norm's scale and shift initialisers: its weights, or ones and zeros when not affine."""
    if op.affine:
        return e.weight(op, "weight"), e.weight(op, "bias")
    return e.constant(op, "one", 1.0, op.in_channels), e.constant(op, "zero", 0.0, op.in_channels)


def _batch_norm(e: Emitter, op: Norm, x: str, out: str) -> None:
    scale, bias = _affine_params(e, op)
    stats = [e.weight(op, "running_mean"), e.weight(op, "running_var")]
    e.add("BatchNormalization", [x, scale, bias, *stats], out, op.path, epsilon=op.eps)


def _instance_norm(e: Emitter, op: Norm, x: str, out: str) -> None:
    scale, bias = _affine_params(e, op)
    e.add("InstanceNormalization", [x, scale, bias], out, op.path, epsilon=op.eps)


def _group_norm(e: Emitter, op: Norm, x: str, out: str) -> None:
    """As instance norm over ``(N, groups, C/groups * size)``, then the per-channel affine.

    The exact semantics in every opset (GroupNormalization's scale changed meaning in opset 21).
    """
    p = op.path
    e.add("Shape", [x], f"{p}.shape", f"{p}.shape")
    grouped = e.int64(f"{p}.grouped_shape", [0, op.groups, -1])
    e.add("Reshape", [x, grouped], f"{p}.grouped", f"{p}.group")
    ones, zeros = e.constant(op, "group_one", 1.0, op.groups), e.constant(op, "group_zero", 0.0, op.groups)
    e.add("InstanceNormalization", [f"{p}.grouped", ones, zeros], f"{p}.normed", f"{p}.normalize", epsilon=op.eps)
    target = out if not op.affine else f"{p}.ungrouped"
    e.add("Reshape", [f"{p}.normed", f"{p}.shape"], target, f"{p}.ungroup")
    if op.affine:
        e.add("Mul", [target, e.vector(op, "weight", op.rank)], f"{p}.scaled", f"{p}.mul")
        e.add("Add", [f"{p}.scaled", e.vector(op, "bias", op.rank)], out, p)


NORMS: dict[str, Callable[[Emitter, Norm, str, str], None]] = {
    "batch": _batch_norm,
    "instance": _instance_norm,
    "group": _group_norm,
}


def _norm(e: Emitter, op: Norm, x: str, out: str) -> None:
    NORMS[op.norm](e, op, x, out)


def _times(e: Emitter, op: Act, x: str, gate: str, out: str) -> None:
    """``x * gate(x)``: silu, mish and hardswish where their opset lacks them."""
    e.add("Mul", [x, gate], out, op.path)


def _gelu(e: Emitter, op: Act, x: str, out: str) -> None:
    approximate = str(dict(op.args).get("approximate", "none"))
    if e.opset >= 20:
        e.add("Gelu", [x], out, op.path, approximate=approximate)
        return
    p = op.path
    half = e.scalar(f"{p}.half", 0.5)
    one = e.scalar(f"{p}.one", 1.0)
    if approximate == "tanh":  # 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
        e.add("Mul", [x, x], f"{p}.x2", f"{p}.x2")
        e.add("Mul", [f"{p}.x2", x], f"{p}.x3", f"{p}.x3")
        e.add("Mul", [f"{p}.x3", e.scalar(f"{p}.c", 0.044715)], f"{p}.cx3", f"{p}.cx3")
        e.add("Add", [x, f"{p}.cx3"], f"{p}.inner", f"{p}.inner")
        e.add("Mul", [f"{p}.inner", e.scalar(f"{p}.k", math.sqrt(2 / math.pi))], f"{p}.arg", f"{p}.arg")
        e.add("Tanh", [f"{p}.arg"], f"{p}.t", f"{p}.tanh")
    else:  # 0.5 x (1 + erf(x / sqrt(2)))
        e.add("Mul", [x, e.scalar(f"{p}.k", 1 / math.sqrt(2))], f"{p}.arg", f"{p}.arg")
        e.add("Erf", [f"{p}.arg"], f"{p}.t", f"{p}.erf")
    e.add("Add", [f"{p}.t", one], f"{p}.one_plus", f"{p}.add")
    e.add("Mul", [x, f"{p}.one_plus"], f"{p}.x_one_plus", f"{p}.mul")
    e.add("Mul", [f"{p}.x_one_plus", half], out, p)


def _mish(e: Emitter, op: Act, x: str, out: str) -> None:
    if e.opset >= 18:
        e.add("Mish", [x], out, op.path)
        return
    e.add("Softplus", [x], f"{op.path}.softplus", f"{op.path}.softplus")
    e.add("Tanh", [f"{op.path}.softplus"], f"{op.path}.gate", f"{op.path}.tanh")
    _times(e, op, x, f"{op.path}.gate", out)


def _hardswish(e: Emitter, op: Act, x: str, out: str) -> None:
    if e.opset >= 14:
        e.add("HardSwish", [x], out, op.path)
        return
    e.add("HardSigmoid", [x], f"{op.path}.gate", f"{op.path}.gate", alpha=1 / 6, beta=0.5)
    _times(e, op, x, f"{op.path}.gate", out)


def _silu(e: Emitter, op: Act, x: str, out: str) -> None:
    e.add("Sigmoid", [x], f"{op.path}.gate", f"{op.path}.sigmoid")
    _times(e, op, x, f"{op.path}.gate", out)


ACTIVATIONS: dict[str, Callable[[Emitter, Act, str, str], None]] = {
    "relu": lambda e, op, x, out: e.add("Relu", [x], out, op.path),
    "relu6": lambda e, op, x, out: e.add(
        "Clip", [x, e.scalar(f"{op.path}.min", 0.0), e.scalar(f"{op.path}.max", 6.0)], out, op.path
    ),
    "leaky_relu": lambda e, op, x, out: e.add(
        "LeakyRelu", [x], out, op.path, alpha=float(dict(op.args)["negative_slope"])
    ),
    "elu": lambda e, op, x, out: e.add("Elu", [x], out, op.path, alpha=float(dict(op.args)["alpha"])),
    "gelu": _gelu,
    "silu": _silu,
    "mish": _mish,
    "hardswish": _hardswish,
}
"""Activation kind to its node(s); an activation the opset lacks is emitted as its exact decomposition
(Gelu before opset 20, Mish before 18, HardSwish before 14)."""


def _act(e: Emitter, op: Act, x: str, out: str) -> None:
    ACTIVATIONS[op.act](e, op, x, out)


def _pool(e: Emitter, op: Pool, x: str, out: str) -> None:
    e.add("MaxPool" if op.pool == "max" else "AveragePool", [x], out, op.path, **_window(op))


def _global_pool(e: Emitter, op: GlobalPool, x: str, out: str) -> None:
    if op.pool in ("avg", "max"):
        e.add("GlobalAveragePool" if op.pool == "avg" else "GlobalMaxPool", [x], out, op.path)
        return
    p = op.path
    e.add("GlobalAveragePool", [x], f"{p}.avg", f"{p}.avg")
    e.add("GlobalMaxPool", [x], f"{p}.max", f"{p}.max")
    if op.pool == "catavgmax":
        e.add("Concat", [f"{p}.avg", f"{p}.max"], out, p, axis=1)
    else:
        e.add("Add", [f"{p}.avg", f"{p}.max"], f"{p}.sum", f"{p}.add")
        e.add("Mul", [f"{p}.sum", e.scalar(f"{p}.half", 0.5)], out, p)


def _blur(e: Emitter, op: Blur, x: str, out: str) -> None:
    """Reflect-pad by one, then a depthwise convolution with the binomial filter (made here: the
    filter is not part of the state_dict)."""
    taps = np.array([1.0, 2.0, 1.0], dtype=np.float32) / 4
    filt = taps
    for _ in range(op.rank - 1):
        filt = np.multiply.outer(filt, taps)
    weight = np.ascontiguousarray(np.broadcast_to(filt, (op.in_channels, 1, *filt.shape)), dtype=np.float32)
    e.initializers.append(numpy_helper.from_array(weight, f"{op.path}.filt"))
    pads = e.int64(f"{op.path}.pads", [0, 0, *op.padding, 0, 0, *op.padding])
    e.add("Pad", [x, pads], f"{op.path}.padded", f"{op.path}.pad", mode="reflect")
    e.add(
        "Conv",
        [f"{op.path}.padded", f"{op.path}.filt"],
        out,
        op.path,
        kernel_shape=list(op.kernel),
        strides=list(op.stride),
        group=op.in_channels,
    )


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
    Blur.kind: _blur,
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


def to_onnx(
    ir: IR, state: Mapping[str, Any], *, opset: int = DEFAULT_OPSET, features: Sequence[int] | None = None
) -> onnx.ModelProto:
    """The ONNX model of ``ir`` with the weights in ``state`` (a state_dict, tensors or arrays).

    With ``features``, the backbone instead: one output ``feature{i}`` per tap index ``i`` (see
    :func:`~.taps.feature_taps`), and nothing after the last tap.
    """
    check_opset(opset)
    refuse_unexportable(ir)
    emitter = Emitter(state, opset)
    if features is None:
        emitter.output = OUTPUT if ir.info.num_classes else POOLED
        layers = list(ir.layers())
        for i, layer in enumerate(layers):
            emitter.layer(layer, ir.inputs(layer.name), is_last=i == len(layers) - 1)
        shape: list[str | int] = ["batch", ir.output.out_channels]
        outputs = [helper.make_tensor_value_info(emitter.output, TensorProto.FLOAT, shape)]
    else:
        outputs = _feature_outputs(emitter, ir, select(feature_taps(ir), features, "features"))
    graph = helper.make_graph(
        emitter.nodes,
        ir.info.name,
        [
            helper.make_tensor_value_info(
                INPUT, TensorProto.FLOAT, ["batch", ir.info.input_channels, *ir.info.input_size]
            )
        ],
        outputs,
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


def _feature_outputs(emitter: Emitter, ir: IR, taps: Sequence[Tap]) -> list[onnx.ValueInfoProto]:
    """Emit the layers up to the last tap, then an output ``feature{i}`` per tap."""
    layers = list(ir.layers())
    needed = {source for tap in taps for source in tap.sources}
    last = max(i for i, layer in enumerate(layers) if layer.name in needed)
    for layer in layers[: last + 1]:
        emitter.layer(layer, ir.inputs(layer.name), is_last=False)
    outputs = []
    for tap in taps:
        name = f"feature{tap.index}"
        x = emitter.concat(tap.sources, f"{tap.module}.out")
        if tap.act is not None:
            node_emitter(tap.act)(emitter, replace(tap.act, path=f"{tap.module}.act"), x, f"{tap.module}.act")
            x = f"{tap.module}.act"
        emitter.add("Identity", [x], name, name)
        shape: list[str | int] = ["batch", tap.channels, *tap.size]
        outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, shape, doc_string=tap.module))
    return outputs


def export_bytes(
    ir: IR, state: Mapping[str, Any], *, opset: int = DEFAULT_OPSET, features: Sequence[int] | None = None
) -> bytes:
    """The serialised model of ``ir`` with ``state`` (the backbone's, with ``features``)."""
    data: bytes = to_onnx(ir, state, opset=opset, features=features).SerializeToString(deterministic=True)
    return data


def emit(ir: IR, state: Mapping[str, Any] | None, options: Mapping[str, Any]) -> bytes:
    """The ``--to onnx`` target; the front door supplies ``state`` (and has run the passes)."""
    if state is None:
        raise ValueError("the ONNX backend needs weights")
    return export_bytes(ir, state, opset=options.get("opset", DEFAULT_OPSET), features=options.get("features"))
