"""The backends, one module per target family, and the registry of ``build --to`` targets.

A backend reads only an IR (and a state_dict where weights matter); it never imports the spec,
the loader, the compiler or the passes. Each target declares here its file extension, the options
that apply to it and the function that emits it (``module:function``, imported on use, so that
listing targets imports neither torch nor onnx). The CLI builds ``--to`` and its option checks
from :data:`TARGETS`; :func:`register_target` adds one.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..ir import IR

Emitter = Callable[["IR", "Mapping[str, Any] | None", "Mapping[str, Any]"], "bytes | str"]

FRONT_DOOR_OPTIONS = frozenset({"weights", "adapt", "seed", "optimize"})
"""Options the front door handles before the backend runs (weights and their adaptation, initial weights, passes)."""


@dataclass(frozen=True)
class Target:
    """One ``--to`` target: what it writes and which options it takes.

    Attributes:
        name: the ``--to`` value.
        extension: of the default output file.
        options: the option names that apply (``weights``, ``adapt``, ``seed`` and ``optimize`` are
            handled by the front door; the rest are passed to the emitter).
        emitter: ``"module:function"``, the function ``(ir, state, options) -> bytes | str``.
        needs_state: the emitter needs weights (a checkpoint, or initial weights from ``seed``).
        clamps: ``--optimize`` may turn a BN-ReLU before a 1x1 conv into a per-channel clamp;
            off where the runtime's fused BN-ReLU is faster (onnxruntime).
        help: one line for ``--help``.
        formats: file formats the emitter can write, chosen by the output file's suffix and passed
            as the option ``format`` (the first is the default); empty: one format, ``extension``.
        requires: options that must be given (the heat map is meaningless without ``weights``).
    """

    name: str
    extension: str
    options: frozenset[str]
    emitter: str
    needs_state: bool = False
    clamps: bool = True
    help: str = ""
    formats: tuple[str, ...] = ()
    requires: frozenset[str] = frozenset()

    def load(self) -> Emitter:
        module, function = self.emitter.split(":")
        emitter: Emitter = getattr(importlib.import_module(module, __name__), function)
        return emitter

    def describe_options(self) -> str:
        if not self.options:
            return "no options"
        return ", ".join(f"--{name}" for name in sorted(self.options))


TARGETS: dict[str, Target] = {}


def register_target(target: Target) -> None:
    TARGETS[target.name] = target


def suffix_owner(suffix: str) -> str | None:
    """The target of one format whose files end in ``.suffix`` (``json``: json), or None: a file
    of that suffix is that target's, and another target must not write it."""
    return next((t.name for t in TARGETS.values() if not t.formats and t.extension == suffix), None)


def target(name: str) -> Target:
    try:
        return TARGETS[name]
    except KeyError:
        raise ValueError(f"no target {name!r}; the targets are {', '.join(TARGETS)}") from None


_DIAGRAM = frozenset({"detail", "blocks", "rankdir", "labels", "legend", "title", "dpi"})
_MERMAID = frozenset({"detail", "blocks", "rankdir", "labels", "title"})
_RASTER_ONLY = frozenset({"dpi"})
"""Options of png output only: svg and pdf are vector formats, which a dpi would only scale up."""

for _target in (
    Target("torch", "py", frozenset({"optimize"}), ".torch_source:emit", help="standalone PyTorch source"),
    Target(
        "onnx",
        "onnx",
        frozenset({"weights", "adapt", "seed", "opset", "optimize", "features"}),
        ".onnx:emit",
        needs_state=True,
        clamps=False,
        help="an ONNX model",
    ),
    *(
        Target(fmt, fmt, _DIAGRAM - _RASTER_ONLY, f".graphviz:emit_{fmt}", help=f"a Graphviz diagram ({fmt})")
        for fmt in ("svg", "pdf")
    ),
    *(
        Target(fmt, fmt, _DIAGRAM, f".graphviz:emit_{fmt}", help=f"a Graphviz diagram ({fmt})")
        for fmt in ("dot", "png")  # a .dot file keeps the dpi for whoever renders it to png
    ),
    Target("json", "json", frozenset({"optimize"}), ".json_view:emit", help="the IR as JSON"),
    Target("mermaid", "mmd", _MERMAID, ".mermaid:emit", help="a Mermaid flowchart (renders in GitHub Markdown)"),
    Target(
        "heatmap",
        "svg",
        frozenset({"weights", "adapt", "title", "dpi"}),
        ".heatmap:emit",
        needs_state=True,
        help="connection strengths from a checkpoint (svg, png, pdf or dot, by the -o suffix)",
        formats=("svg", "png", "pdf", "dot"),
        requires=frozenset({"weights"}),
    ),
):
    register_target(_target)
