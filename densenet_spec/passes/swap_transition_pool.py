"""Move each transition's average pool before its 1x1 convolution.

Both are linear and act on different axes (the pool mixes positions of one channel, the 1x1
convolution mixes channels of one position), so they commute: the function is unchanged, in
training and inference alike, while the convolution runs on a quarter of the pixels (an eighth
in 3-D). Max pools do not commute with a convolution and stay where they are.

Requires: a sound IR. Ensures: no transition ends in a pointwise conv followed by an average pool.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from ..ir import IR, Conv, Layer, Lowered, Op, Pool
from .base import Pass, replace_ops


def _pointwise(op: Op) -> bool:
    return (
        isinstance(op, Conv)
        and op.groups == 1
        and all(n == 1 for n in (*op.kernel, *op.stride))
        and not any(op.padding)
    )


def _swappable(layer: Layer) -> bool:
    if layer.kind != "transition" or len(layer.ops) < 2:
        return False
    conv, pool = layer.ops[-2:]
    return _pointwise(conv) and isinstance(pool, Pool) and pool.pool == "avg"


def _swapped(layer: Layer) -> tuple[Op, ...]:
    *head, conv, pool = layer.ops
    moved_pool = replace(pool, in_channels=conv.in_channels, in_size=conv.in_size)
    return (*head, moved_pool, replace(conv, in_size=moved_pool.out_size))


class SwapTransitionPool(Pass):
    name = "swap_transition_pool"
    inference_only = False

    def ensures(self, ir: IR) -> list[str]:
        return [f"{layer.name}: still pools after its 1x1 conv" for layer in ir.layers() if _swappable(layer)]

    def rewrite(self, ir: IR, state: dict[str, Any] | None) -> Lowered | None:
        # The same tensors under the same names: the state needs no change.
        return replace_ops(ir, {layer.name: _swapped(layer) for layer in ir.layers() if _swappable(layer)})


swap_transition_pool = SwapTransitionPool()
