"""What a pass is: an IR rewrite that states what it requires and ensures.

A pass returns a :class:`PassResult` with a new IR (the input is never changed) and whether it
changed anything. Passes that change which tensors exist (folding a BN into a convolution) also
rewrite a state_dict of the old IR into one for the new IR, so weights follow the graph.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Protocol

from ..compiler import check_ir
from ..ir import IR, Layer, Op

State = Mapping[str, Any]


@dataclass(frozen=True)
class PassResult:
    ir: IR
    modified: bool


class Pass(Protocol):
    name: str
    requires: str
    ensures: str
    inference_only: bool

    def __call__(self, ir: IR) -> PassResult: ...

    def rewrite_state(self, state: State, before: IR) -> dict[str, Any]: ...


def rewrite_layers(ir: IR, name: str, rewrite: Callable[[Layer], tuple[Op, ...] | None]) -> PassResult:
    """Apply ``rewrite`` to every layer's ops (``None``: leave the layer as it is) and re-check the IR."""
    out = ir.copy()
    modified = False
    for layer in ir.layers():
        ops = rewrite(layer)
        if ops is not None and ops != layer.ops:
            out.replace_layer(layer.with_ops(ops))
            modified = True
    if not modified:
        return PassResult(ir, False)
    out.info = replace(out.info, passes=(*out.info.passes, name))
    broken = check_ir(out)
    if broken:
        raise AssertionError(f"pass {name} broke the IR:\n" + "\n".join(broken))
    return PassResult(out, True)
