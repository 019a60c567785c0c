"""IR rewrites, one pass a module, each with its tests beside it (``*_test.py``).

:func:`optimize` runs the inference passes in order, carrying a state_dict along when given, so
that weights trained on the plain graph run on the optimised one. Every target that offers
``--optimize`` (the torch model, its source, ONNX, the JSON view) goes through here.
"""

from __future__ import annotations

from typing import Any

from ..ir import IR
from .base import Pass, PassError, PassResult, State
from .fold_batchnorm import fold_batchnorm, fold_batchnorm_no_clamps
from .swap_act_pool import swap_act_pool
from .swap_transition_pool import swap_transition_pool

INFERENCE_PASSES: tuple[Pass, ...] = (swap_transition_pool, fold_batchnorm, swap_act_pool)
NO_CLAMP_PASSES: tuple[Pass, ...] = (swap_transition_pool, fold_batchnorm_no_clamps)
"""For onnxruntime: its fused BN-ReLU beats a per-channel clamp, and it fuses the stem's ReLU into
the convolution, which swap_act_pool would take away."""

__all__ = [
    "INFERENCE_PASSES",
    "NO_CLAMP_PASSES",
    "Pass",
    "PassError",
    "PassResult",
    "fold_batchnorm",
    "fold_batchnorm_no_clamps",
    "optimize",
    "optimize_ir",
    "optimize_with_state",
    "swap_act_pool",
    "swap_transition_pool",
]


def optimize(ir: IR, state: State | None = None, passes: tuple[Pass, ...] = INFERENCE_PASSES) -> PassResult:
    """Run ``passes`` in order; the result's state is ``state`` rewritten for the new IR."""
    modified = False
    current = dict(state) if state is not None else None
    for step in passes:
        result = step(ir, current)
        ir, current, modified = result.ir, result.state, modified or result.modified
    return PassResult(ir, modified, current)


def optimize_ir(ir: IR, passes: tuple[Pass, ...] = INFERENCE_PASSES) -> IR:
    return optimize(ir, None, passes).ir


def optimize_with_state(ir: IR, state: State, passes: tuple[Pass, ...] = INFERENCE_PASSES) -> tuple[IR, dict[str, Any]]:
    result = optimize(ir, state, passes)
    assert result.state is not None
    return result.ir, result.state
