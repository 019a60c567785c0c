"""What a pass is: an IR rewrite that states what it requires and ensures, checked on every run.

A pass takes an IR (and, where weights matter, a state_dict of it) and returns a
:class:`PassResult` with a new IR (the input is never changed), the state_dict rewritten for the
new IR, and whether anything changed. :meth:`Pass.__call__` checks the pass's ``requires`` on the
input and its ``ensures`` (plus every IR invariant) on the output, and names the pass that broke
them, so that a wrong rewrite fails where it happens instead of in a backend.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..ir import IR, Layer, Lowered, Op, check_ir

State = Mapping[str, Any]


class PassError(AssertionError):
    """A pass was run on an IR it does not accept, or produced one that breaks its promise."""


@dataclass(frozen=True)
class PassResult:
    ir: IR
    modified: bool
    state: dict[str, Any] | None = None


class Pass(ABC):
    """An IR rewrite. Subclasses set ``name`` and ``inference_only`` and implement :meth:`rewrite`."""

    name: str = ""
    inference_only: bool = False

    def requires(self, ir: IR) -> list[str]:
        """What is wrong with ``ir`` as an input of this pass; empty when it may run."""
        return []

    def ensures(self, ir: IR) -> list[str]:
        """What the output ``ir`` fails to promise; empty when the pass kept its word."""
        return []

    @abstractmethod
    def rewrite(self, ir: IR, state: dict[str, Any] | None) -> Lowered | None:
        """The rewritten layers (``None``: nothing to do); ``state`` is edited in place when given."""

    def __call__(self, ir: IR, state: State | None = None) -> PassResult:
        broken = check_ir(ir) + self.requires(ir)
        if broken:
            raise PassError(f"pass {self.name} cannot run on {ir.info.name}:\n" + "\n".join(broken))
        new_state = dict(state) if state is not None else None
        lowered = self.rewrite(ir, new_state)
        if lowered is None:
            return PassResult(ir, False, new_state)
        out = ir.with_layers(
            lowered,
            passes=(*ir.info.passes, self.name),
            inference_only=ir.info.inference_only or self.inference_only,
        )
        broken = check_ir(out) + self.ensures(out)
        if broken:
            raise PassError(f"pass {self.name} broke its promise on {ir.info.name}:\n" + "\n".join(broken))
        return PassResult(out, True, new_state)


def replace_ops(ir: IR, new_ops: Mapping[str, tuple[Op, ...]]) -> Lowered | None:
    """``ir``'s layers with the op lists in ``new_ops`` (by layer name) swapped in; None if none differ."""
    lowered = ir.lowered()
    changed = False
    out: Lowered = []
    for layer, inputs in lowered:
        ops = new_ops.get(layer.name)
        if ops is not None and ops != layer.ops:
            layer = Layer(layer.name, layer.kind, layer.stage, ops, layer.block)
            changed = True
        out.append((layer, inputs))
    return out if changed else None
