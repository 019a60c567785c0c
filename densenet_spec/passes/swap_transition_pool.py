"""Move each transition's 2x2 average pool before its 1x1 convolution.

Both are linear and act on different axes (the pool mixes pixels of one channel, the 1x1 conv
mixes channels of one pixel), so they commute: the function is unchanged, in training and
inference alike, while the convolution runs on a quarter of the pixels.

Requires: a transition whose ops end in conv 1x1 (stride 1, no padding) then avgpool.
Ensures: the pool directly follows the ReLU; tensors and their names are unchanged.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from ..ir import IR, Layer, Op
from .base import PassResult, State, rewrite_layers


def _swapped(layer: Layer) -> tuple[Op, ...] | None:
    if layer.kind != "transition" or len(layer.ops) < 2:
        return None
    *head, conv, pool = layer.ops
    pointwise = conv.kind == "conv" and conv.kernel == 1 and conv.stride == 1 and conv.padding == 0
    if not (pointwise and pool.kind == "avgpool"):
        return None
    moved_pool = replace(pool, in_channels=conv.in_channels, out_channels=conv.in_channels, in_size=conv.in_size)
    moved_conv = replace(conv, in_size=moved_pool.out_size)
    return (*head, moved_pool, moved_conv)


class SwapTransitionPool:
    name = "swap_transition_pool"
    requires = "transitions ending in conv1x1 -> avgpool"
    ensures = "transitions end in avgpool -> conv1x1; same function, 4x fewer transition MACs"
    inference_only = False

    def __call__(self, ir: IR) -> PassResult:
        return rewrite_layers(ir, self.name, _swapped)

    def rewrite_state(self, state: State, before: IR) -> dict[str, Any]:
        return dict(state)  # the same tensors under the same names


swap_transition_pool = SwapTransitionPool()
