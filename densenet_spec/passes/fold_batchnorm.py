"""Fold an inference-mode BN into the convolution right before it (the bottleneck's norm2).

In eval mode BN is the affine map ``y = (x - mean) / sqrt(var + eps) * gamma + beta`` per channel,
so ``BN(conv(x))`` is a convolution with weights scaled by ``gamma / sqrt(var + eps)`` and a bias.
Only a BN that directly follows a convolution folds: the first BN of a dense layer follows the
concatenation, behind no convolution.

Requires: eval mode (running statistics fixed); a conv followed directly by a BN in one layer.
Ensures: no BN follows a conv; the conv gains a bias; the BN's tensors are gone.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch

from ..ir import IR, Layer, Op
from .base import PassResult, State, rewrite_layers

EPS = 1e-5


def _pairs(layer: Layer) -> list[tuple[Op, Op]]:
    return [
        (a, b) for a, b in zip(layer.ops, layer.ops[1:], strict=False) if a.kind == "conv" and b.kind == "batchnorm"
    ]


def _folded(layer: Layer) -> tuple[Op, ...] | None:
    pairs = _pairs(layer)
    if not pairs:
        return None
    norms = {bn.path for _, bn in pairs}
    convs = {conv.path for conv, _ in pairs}
    return tuple(replace(op, bias=True) if op.path in convs else op for op in layer.ops if op.path not in norms)


class FoldBatchNorm:
    name = "fold_batchnorm"
    requires = "eval mode; a BN directly after a conv"
    ensures = "no BN directly after a conv; that conv has a bias"
    inference_only = True

    def __call__(self, ir: IR) -> PassResult:
        return rewrite_layers(ir, self.name, _folded)

    def rewrite_state(self, state: State, before: IR) -> dict[str, Any]:
        out = dict(state)
        for layer in before.layers():
            for conv, bn in _pairs(layer):
                weight = torch.as_tensor(state[f"{conv.path}.weight"]).double()
                bias = torch.as_tensor(state[f"{conv.path}.bias"]).double() if conv.bias else 0.0
                g = {
                    k: torch.as_tensor(state[f"{bn.path}.{k}"]).double()
                    for k in ("weight", "bias", "running_mean", "running_var")
                }
                scale = g["weight"] / torch.sqrt(g["running_var"] + EPS)
                dtype = torch.as_tensor(state[f"{conv.path}.weight"]).dtype
                out[f"{conv.path}.weight"] = (weight * scale[:, None, None, None]).to(dtype)
                out[f"{conv.path}.bias"] = ((bias - g["running_mean"]) * scale + g["bias"]).to(dtype)
                for key in bn.tensors():
                    out.pop(f"{bn.path}.{key}", None)
        return out


fold_batchnorm = FoldBatchNorm()
