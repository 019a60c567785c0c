"""IR rewrites, one pass a module, each with its tests beside it (``*_test.py``).

:func:`optimize_ir` runs the inference passes in order; :func:`optimize_with_state` also carries a
state_dict along, so that weights trained on the plain graph run on the optimised one.
"""

from __future__ import annotations

from typing import Any

from ..ir import IR
from .base import Pass, PassResult, State
from .fold_batchnorm import fold_batchnorm
from .swap_transition_pool import swap_transition_pool

INFERENCE_PASSES: tuple[Pass, ...] = (swap_transition_pool, fold_batchnorm)

__all__ = [
    "INFERENCE_PASSES",
    "Pass",
    "PassResult",
    "fold_batchnorm",
    "optimize_ir",
    "optimize_with_state",
    "swap_transition_pool",
]


def optimize_ir(ir: IR, passes: tuple[Pass, ...] = INFERENCE_PASSES) -> IR:
    for step in passes:
        ir = step(ir).ir
    return ir


def optimize_with_state(ir: IR, state: State, passes: tuple[Pass, ...] = INFERENCE_PASSES) -> tuple[IR, dict[str, Any]]:
    current = dict(state)
    for step in passes:
        result = step(ir)
        if result.modified:
            current = step.rewrite_state(current, ir)
        ir = result.ir
    return ir, current
