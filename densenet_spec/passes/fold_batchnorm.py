"""Fold every inference-mode batch norm away: into a convolution, a clamp, or a per-channel affine.

In eval mode a BN is the affine map ``x * scale + shift`` per channel, with
``scale = gamma / sqrt(var + eps)`` (``eps`` read from the IR op) and ``shift = beta - mean * scale``.
Three places it can go, tried in this order:

1. **conv -> BN**: the BN scales the convolution's output channels, so it folds into the conv's
   weights and a bias (the stem's conv0 and norm0, a bottleneck's conv1 and norm2). A BN left with
   nothing else in its layer is spliced out of the graph.
2. **BN -> ReLU -> (average pools, flatten)* -> 1x1 conv or linear**: ``relu(s * x + b)`` equals
   ``s * clamp(x, lo, hi) + b`` with ``lo = -b/s`` (``s > 0``) or ``hi = -b/s`` (``s < 0``); average
   pools and flatten commute with a per-channel affine map, and ``s`` and ``b`` fold into the
   weights and bias of the 1x1 conv or linear layer that mixes the channels. One clamp per element
   remains. Zero-padded windows (3x3 convs, padded pools) respond unevenly to a constant and stop it.
3. **anything else** (BN -> ReLU -> 3x3 conv): the BN becomes an :class:`~densenet_spec.ir.Affine`.

Only ReLU passes test 2: ``act(s * x + b)`` is ``s * g(x) + b`` for no other activation.
Requires: a sound IR. Ensures: no batch norm remains. Inference only (running statistics fixed).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import torch
from torch import Tensor

from ..ir import IR, Act, Affine, Clamp, Conv, Dropout, Flatten, GlobalPool, Layer, Linear, Lowered, Norm, Op, Pool
from .base import Pass

Position = tuple[str, int]  # (layer name, op index)


class _Graph:
    """A mutable copy of the IR's layers, for rewrites that cross layer boundaries."""

    def __init__(self, ir: IR) -> None:
        self.layers = {layer.name: layer for layer in ir.layers()}
        self.ops = {name: list(layer.ops) for name, layer in self.layers.items()}
        self.inputs = {layer.name: ir.inputs(layer.name) for layer in ir.layers()}
        self._successors = {name: list(ir.graph.successors(name)) for name in self.layers}

    def successors(self, name: str) -> list[str]:
        return self._successors[name]

    def before(self, name: str, index: int) -> Position | None:
        """The op whose output is this op's whole input, if one op alone feeds it."""
        if index > 0:
            return name, index - 1
        sources = self.inputs[name]
        if len(sources) == 1 and self._only_successor(sources[0], name) and self.ops[sources[0]]:
            return sources[0], len(self.ops[sources[0]]) - 1
        return None

    def after(self, name: str, index: int) -> Iterator[Position]:
        """The ops that take this op's output alone, one after another, across layers."""
        while True:
            if index + 1 < len(self.ops[name]):
                index += 1
                yield name, index
                continue
            following = self.successors(name)
            if len(following) != 1 or self.inputs[following[0]] != [name] or not self.ops[following[0]]:
                return
            name, index = following[0], -1

    def _only_successor(self, source: str, name: str) -> bool:
        return self.successors(source) == [name]

    def op(self, at: Position) -> Op:
        return self.ops[at[0]][at[1]]

    def put(self, at: Position, op: Op) -> None:
        self.ops[at[0]][at[1]] = op

    def lowered(self, removed: frozenset[str] | set[str]) -> Lowered:
        """The layers with the ``removed`` op paths dropped; layers left empty are spliced out."""
        out: Lowered = []
        renamed: dict[str, str] = {}
        for name, layer in self.layers.items():
            inputs = [renamed.get(source, source) for source in self.inputs[name]]
            ops = tuple(op for op in self.ops[name] if op.path not in removed)
            if not ops:
                renamed[name] = inputs[0]  # a one-input layer (a BN) folded away entirely
                continue
            out.append((Layer(name, layer.kind, layer.stage, ops, layer.block), inputs))
        return out


def _is_batchnorm(op: Op) -> bool:
    return isinstance(op, Norm) and op.norm == "batch"


def _passes_affine(op: Op) -> bool:
    """Ops between a ReLU and the channel mixer that commute with a per-channel affine map (dropout:
    the identity at inference, which is all this pass is for)."""
    if isinstance(op, Pool):
        return op.pool == "avg" and not any(op.padding)
    return isinstance(op, Flatten | Dropout) or (isinstance(op, GlobalPool) and op.pool == "avg")


def _mixer(op: Op) -> bool:
    """A channel mixer that can absorb a per-channel affine map of its input exactly."""
    if isinstance(op, Linear):
        return True
    return isinstance(op, Conv) and op.groups == 1 and all(k == 1 for k in op.kernel) and not any(op.padding)


class FoldBatchNorm(Pass):
    """The fold; ``clamps=False`` skips place 2 (a BN-ReLU stays an affine and a ReLU), for runtimes
    whose fused BN-ReLU kernel beats a per-channel clamp (onnxruntime: 109 vs 119-151 ms, densenet121).
    """

    inference_only = True

    def __init__(self, clamps: bool = True) -> None:
        self.clamps = clamps
        self.name = "fold_batchnorm" if clamps else "fold_batchnorm_no_clamps"

    def ensures(self, ir: IR) -> list[str]:
        return [f"{op.path}: a batch norm is left" for op in ir.ops() if _is_batchnorm(op)]

    def rewrite(self, ir: IR, state: dict[str, Any] | None) -> Lowered | None:
        if not any(_is_batchnorm(op) for op in ir.ops()):
            return None
        graph = _Graph(ir)
        removed: set[str] = set()
        self._into_convs(graph, removed, state)
        self._into_mixers(graph, removed, state, self.clamps)
        return graph.lowered(removed)

    @staticmethod
    def _into_convs(graph: _Graph, removed: set[str], state: dict[str, Any] | None) -> None:
        for name in list(graph.ops):
            for index, op in enumerate(graph.ops[name]):
                at = graph.before(name, index) if _is_batchnorm(op) else None
                conv = graph.op(at) if at is not None else None
                if at is None or not isinstance(conv, Conv) or conv.path in removed:
                    continue
                assert isinstance(op, Norm)
                if state is not None:
                    _fold_into_conv(state, conv, op)
                graph.put(at, replace(conv, bias=True))
                removed.add(op.path)

    @staticmethod
    def _into_mixers(graph: _Graph, removed: set[str], state: dict[str, Any] | None, clamps: bool) -> None:
        for name in list(graph.ops):
            for index, op in enumerate(graph.ops[name]):
                if not _is_batchnorm(op) or op.path in removed:
                    continue
                assert isinstance(op, Norm)
                chain = [at for at in graph.after(name, index) if graph.op(at).path not in removed]
                target = _clamp_target(graph, chain) if clamps else None
                if target is None:
                    graph.put((name, index), Affine(path=op.path, in_channels=op.in_channels, in_size=op.in_size))
                    if state is not None:
                        _to_affine(state, op)
                    continue
                relu, mixer = graph.op(chain[0]), graph.op(target)
                if state is not None:
                    _fold_into_mixer(state, op, mixer)
                graph.put((name, index), Clamp(path=op.path, in_channels=op.in_channels, in_size=op.in_size))
                assert isinstance(mixer, Conv | Linear)
                graph.put(target, replace(mixer, bias=True))
                removed.add(relu.path)


def _clamp_target(graph: _Graph, chain: list[Position]) -> Position | None:
    """Where a BN-ReLU's affine part can go: the mixer after the ReLU and affine-commuting ops."""
    if not chain:
        return None
    first = graph.op(chain[0])
    if not (isinstance(first, Act) and first.act == "relu"):
        return None
    for at in chain[1:]:
        op = graph.op(at)
        if _mixer(op):
            return at
        if not _passes_affine(op):
            return None
    return None


# ----------------------------------------------------------------------------- weights


def _affine(state: dict[str, Any], norm: Norm) -> tuple[Tensor, Tensor]:
    """The eval-mode BN as ``x * scale + shift`` per channel, in float64."""

    def get(key: str, default: float) -> Tensor:
        found = state.get(f"{norm.path}.{key}")
        return torch.as_tensor(found).double() if found is not None else torch.full((norm.in_channels,), default)

    scale = get("weight", 1.0).double() / torch.sqrt(get("running_var", 1.0) + norm.eps)
    return scale, get("bias", 0.0).double() - get("running_mean", 0.0) * scale


def _drop(state: dict[str, Any], op: Op) -> None:
    for key in op.tensors():
        state.pop(f"{op.path}.{key}", None)


def _channels(values: Tensor, op: Op, like: Tensor) -> Tensor:
    """Per-channel values shaped ``(C, 1, ...)`` to broadcast over ``(N, C, *size)``."""
    return values.reshape(-1, *(1,) * op.rank).to(like.dtype)


def _fold_into_conv(state: dict[str, Any], conv: Conv, norm: Norm) -> None:
    scale, shift = _affine(state, norm)
    weight = torch.as_tensor(state[f"{conv.path}.weight"])
    bias = torch.as_tensor(state[f"{conv.path}.bias"]).double() if conv.bias else torch.zeros_like(scale)
    state[f"{conv.path}.weight"] = (weight.double() * scale.reshape(-1, *(1,) * (weight.dim() - 1))).to(weight.dtype)
    state[f"{conv.path}.bias"] = (bias * scale + shift).to(weight.dtype)
    _drop(state, norm)


def _to_affine(state: dict[str, Any], norm: Norm) -> None:
    like = torch.as_tensor(state[f"{norm.path}.running_mean"])
    scale, shift = _affine(state, norm)
    _drop(state, norm)
    state[f"{norm.path}.scale"] = _channels(scale, norm, like)
    state[f"{norm.path}.shift"] = _channels(shift, norm, like)


def _fold_into_mixer(state: dict[str, Any], norm: Norm, mixer: Op) -> None:
    """``mixer(relu(s * x + b))`` as ``mixer'(clamp(x, lo, hi))``; s == 0: relu(b) is the whole input."""
    scale, shift = _affine(state, norm)
    like = torch.as_tensor(state[f"{norm.path}.running_mean"])
    _drop(state, norm)
    edge = torch.where(scale != 0, -shift / scale, torch.zeros_like(scale))
    inf = torch.full_like(scale, float("inf"))
    zero = torch.zeros_like(scale)
    lo = torch.where(scale > 0, edge, torch.where(scale < 0, -inf, zero))
    hi = torch.where(scale < 0, edge, torch.where(scale > 0, inf, zero))
    state[f"{norm.path}.lo"] = _channels(lo, norm, like)
    state[f"{norm.path}.hi"] = _channels(hi, norm, like)
    const = torch.where(scale != 0, shift, shift.clamp(min=0))
    weight = torch.as_tensor(state[f"{mixer.path}.weight"])
    flat = weight.double().reshape(weight.shape[0], weight.shape[1])
    bias = state.get(f"{mixer.path}.bias")
    old_bias = torch.as_tensor(bias).double() if bias is not None else torch.zeros(weight.shape[0], dtype=torch.float64)
    state[f"{mixer.path}.weight"] = (flat * scale.view(1, -1)).reshape(weight.shape).to(weight.dtype)
    state[f"{mixer.path}.bias"] = (flat @ const + old_bias).to(weight.dtype)


fold_batchnorm = FoldBatchNorm()
fold_batchnorm_no_clamps = FoldBatchNorm(clamps=False)
