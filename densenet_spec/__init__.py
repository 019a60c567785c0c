"""densenet-spec: a compiler for DenseNet-family architectures written as YAML specs.

The pipeline, in order: :func:`load_spec` (YAML to a validated Spec), :func:`compile_spec` (Spec to
a checked IR of layers and dense connections), then the backends: :func:`build_model` (a
``torch.nn.Module``), :func:`export_onnx`, and the Graphviz diagrams. The torch-based functions
import torch on first use, so that validating a spec stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._version import __version__
from .compiler import compile_spec
from .errors import Location, Problem, SpecError
from .ir import IR, Layer, Op
from .loader import load_spec, preset_names
from .schema import Spec

if TYPE_CHECKING:
    from .backends.onnx import export_onnx
    from .backends.torch_module import build_model
    from .optimize import optimize_for_inference

__all__ = [
    "IR",
    "Layer",
    "Location",
    "Op",
    "Problem",
    "Spec",
    "SpecError",
    "__version__",
    "build_model",
    "compile_spec",
    "export_onnx",
    "load_spec",
    "optimize_for_inference",
    "preset_names",
]

_LAZY = {
    "build_model": "backends.torch_module",
    "export_onnx": "backends.onnx",
    "optimize_for_inference": "optimize",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
