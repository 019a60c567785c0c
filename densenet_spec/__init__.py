"""densenet-spec: a compiler for DenseNet-family architectures written as YAML specs.

The pipeline, in order: :func:`load_spec` (YAML to a validated Spec), :func:`compile_spec` (Spec to
a checked IR of layers and dense connections), then the backends, reached through the front door
(:mod:`densenet_spec.api`): :func:`build_model` (a ``torch.nn.Module``), :func:`optimize_for_inference`,
:func:`export_onnx`, and :func:`emit` for every ``build --to`` target. Torch is imported on first
use, so that validating a spec stays fast.
"""

from __future__ import annotations

from ._version import __version__
from .api import as_ir, build_model, emit, export_onnx, infer_spec, optimize, optimize_for_inference
from .compiler import compile_spec
from .errors import Location, Problem, RenderWarning, SpecError, ToolError
from .ir import IR, Layer, Op
from .loader import load_spec, preset_names
from .schema import Spec

__all__ = [
    "IR",
    "Layer",
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
    "optimize",
    "optimize_for_inference",
    "preset_names",
]
