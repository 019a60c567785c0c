"""densenet-spec: a compiler for DenseNet-family architectures written as YAML specs.

The pipeline, in order: :func:`load_spec` (YAML to a validated Spec), :func:`compile_spec` (Spec to
a checked IR of layers and dense connections), then the backends, reached through the front door
(:mod:`densenet_spec.api`): :func:`build_model` (a ``torch.nn.Module``), :func:`optimize_for_inference`,
:func:`export_onnx`, and :func:`emit` for every ``build --to`` target. Torch is imported on first
use, so that validating a spec stays fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__
from .api import as_ir, build_model, emit, export_onnx, infer_spec, optimize, optimize_for_inference, state_for
from .compiler import compile_spec
from .errors import Location, Problem, RenderWarning, SpecError, ToolError
from .ir import IR, Layer, Op
from .loader import load_spec, preset_names
from .schema import Spec

if TYPE_CHECKING:
    from .backends.torch_features import FeatureNet
    from .backends.torch_runtime import DenseNet
    from .interop import LoadReport, load_weights

# What needs torch, imported when first asked for (``densenet_spec.DenseNet``).
_LAZY = {
    "DenseNet": ".backends.torch_runtime",
    "FeatureNet": ".backends.torch_features",
    "LoadReport": ".interop",
    "load_weights": ".interop",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "IR",
    "DenseNet",
    "FeatureNet",
    "Layer",
    "LoadReport",
    "Location",
    "Op",
    "Problem",
    "RenderWarning",
    "Spec",
    "SpecError",
    "ToolError",
    "__version__",
    "as_ir",
    "build_model",
    "compile_spec",
    "emit",
    "export_onnx",
    "infer_spec",
    "load_spec",
    "load_weights",
    "optimize",
    "optimize_for_inference",
    "preset_names",
    "state_for",
]
