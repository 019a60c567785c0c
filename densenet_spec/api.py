"""The front door: spec -> IR -> passes -> backend, with weights where they matter.

Backends read only an IR (and a state_dict); everything that turns a user's input into those —
loading and compiling a spec, reading a checkpoint, drawing initial weights, running the
optimisation passes — happens here, once, for the Python API and the command line alike.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .compiler import compile_spec
from .errors import SpecError
from .ir import IR
from .loader import load_spec
from .schema import Spec

if TYPE_CHECKING:
    from torch import Tensor

    from .backends.torch_runtime import DenseNet

SpecLike = Spec | IR | str | os.PathLike[str]
Weights = Mapping[str, Any] | str | os.PathLike[str]


def as_ir(spec: SpecLike, *, strict: bool = False) -> IR:
    """A Spec, a spec file, a preset name or an IR, compiled to an IR."""
    if isinstance(spec, IR):
        return spec
    return compile_spec(spec if isinstance(spec, Spec) else load_spec(spec), strict=strict)


def state_for(ir: IR, weights: Weights | None = None, *, seed: int = 0) -> dict[str, Tensor]:
    """The weights for ``ir``: a checkpoint file or a state_dict, checked key by key; or, without
    one, the reference initialisation drawn with ``seed``.

    Raises:
        SpecError: the checkpoint cannot be read safely, or its keys or shapes do not fit ``ir``.
    """
    from .weights import check_state_dict, load_state_dict

    if weights is None:
        return initial_state_dict(ir, seed)
    if not isinstance(weights, Mapping):
        return load_state_dict(Path(weights), ir)
    state = dict(weights)
    problems = check_state_dict(state, ir)
    if problems:
        raise SpecError(problems)
    return state


def initial_state_dict(ir: IR, seed: int) -> dict[str, Tensor]:
    """The torch backend's initial weights for ``seed``."""
    from .backends.torch_module import build_module

    return build_module(ir, seed=seed).state_dict()


def build_model(
    spec: SpecLike,
    *,
    memory_efficient: bool = False,
    seed: int | None = None,
    weights: Weights | None = None,
) -> DenseNet:
    """A ``torch.nn.Module`` of the network, built from the compiled IR alone.

    Args:
        spec: a Spec, a spec file, a preset name, or an already compiled IR.
        memory_efficient: recompute the concatenation-BN-ReLU of each dense layer in backward
            instead of storing it (less memory, a little more time in training).
        seed: seed of the initial weights; the same seed gives the same weights. ``None`` draws
            from torch's global generator.
        weights: a checkpoint file or a state_dict to load (strictly) instead.
    """
    from .backends.torch_module import build_module

    ir = as_ir(spec)
    state = state_for(ir, weights) if weights is not None else None
    return build_module(ir, memory_efficient=memory_efficient, seed=seed, state_dict=state)


def optimize(
    ir: IR, state: Mapping[str, Any] | None = None, *, clamps: bool = True
) -> tuple[IR, dict[str, Any] | None]:
    """The inference passes on ``ir`` (and on its weights, when given).

    ``clamps=False`` keeps each BN-ReLU before a 1x1 conv as an affine and a ReLU (the ONNX target's
    choice: onnxruntime's fused BN-ReLU is faster than a per-channel clamp).
    """
    from .passes import INFERENCE_PASSES, NO_CLAMP_PASSES
    from .passes import optimize as run_passes

    result = run_passes(ir, state, INFERENCE_PASSES if clamps else NO_CLAMP_PASSES)
    return result.ir, result.state


def optimize_for_inference(model: DenseNet) -> DenseNet:
    """An eval-only model computing the same function as ``model`` (with its weights), faster.

    The inference passes fold every batch norm (into convolutions, clamps and per-channel
    affines) and pool before each transition's 1x1 convolution; the network is then built from the
    optimised IR (2-D networks in channels_last, where CPU convolutions are fastest).

    Args:
        model: a model from :func:`build_model`, with any weights loaded.
    """
    from .backends.torch_module import build_module

    ir = getattr(model, "ir", None)
    if not isinstance(ir, IR):
        raise TypeError("optimize_for_inference takes a model made by densenet_spec.build_model")
    device = next(model.parameters()).device
    state = {key: value.detach().cpu() for key, value in model.state_dict().items()}
    fast_ir, fast_state = optimize(ir, state)
    return build_module(fast_ir, state_dict=fast_state).to(device)


def emit(ir: IR, target: str, options: Mapping[str, Any] | None = None) -> bytes | str:
    """What ``build --to TARGET`` writes for ``ir``.

    ``options`` may hold ``optimize``, ``weights`` and ``seed`` (handled here) and the target's own
    options (passed on); each must be one that the target declares. A target with several
    ``formats`` (the heat map) also takes ``format``.
    """
    from .backends import target as find_target

    chosen = find_target(target)
    given = dict(options or {})
    unknown = sorted(set(given) - chosen.options - ({"format"} if chosen.formats else set()))
    if unknown:
        raise ValueError(f"{', '.join(unknown)} do not apply to --to {target}; it takes {chosen.describe_options()}")
    missing = sorted(name for name in chosen.requires if given.get(name) is None)
    if missing:
        raise ValueError(f"--to {target} needs {', '.join('--' + name for name in missing)}")
    if chosen.formats and given.setdefault("format", chosen.formats[0]) not in chosen.formats:
        raise ValueError(f"--to {target} writes {', '.join(chosen.formats)}, not {given['format']}")
    state = state_for(ir, given.pop("weights", None), seed=given.pop("seed", 0)) if chosen.needs_state else None
    if given.pop("optimize", False):
        ir, state = optimize(ir, state, clamps=chosen.clamps)
    return chosen.load()(ir, state, given)


def export_onnx(
    spec: SpecLike,
    path: str | os.PathLike[str],
    *,
    state_dict: Weights | None = None,
    opset: int = 17,
    optimize: bool = False,
    seed: int = 0,
) -> Path:
    """Write the ONNX model of ``spec`` to ``path`` atomically and return the path.

    Args:
        spec: a Spec, a spec file, a preset name, or a compiled IR.
        state_dict: the weights, a state_dict or a checkpoint file (checked against the spec);
            default: the torch backend's initialisation with ``seed``.
        opset: the ONNX opset, 13 or later.
        optimize: apply the optimisation passes (BN folding, pool before the transition conv).
    """
    from .outputs import write_atomic

    data = emit(as_ir(spec), "onnx", {"weights": state_dict, "opset": opset, "optimize": optimize, "seed": seed})
    target = Path(path)
    write_atomic(target, data)
    return target
