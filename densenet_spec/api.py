"""The front door: spec -> IR -> passes -> backend, with weights where they matter.

Backends read only an IR (and a state_dict); everything that turns a user's input into those —
loading and compiling a spec, reading a checkpoint, drawing initial weights, running the
optimisation passes — happens here, once, for the Python API and the command line alike.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, overload

from .backends.views import DPI_RANGE, Detail, LabelStyle, RankDir, title_problem
from .compiler import compile_spec
from .errors import Location, Problem, RenderWarning, SpecError
from .ir import IR
from .loader import load_spec, spec_from_data
from .schema import Spec

if TYPE_CHECKING:
    import torch
    from torch import Tensor

    from .backends.torch_features import FeatureNet
    from .backends.torch_runtime import DenseNet
    from .interop import LoadReport

SpecLike = Spec | IR | Mapping[str, Any] | str | os.PathLike[str]
Weights = Mapping[str, Any] | str | os.PathLike[str]


def as_ir(spec: SpecLike, *, strict: bool = False) -> IR:
    """A Spec, a spec's fields as a mapping (a parsed YAML or JSON document), a spec file, a preset
    name or an IR, compiled to an IR.

    Raises:
        SpecError: the spec is not valid (every problem, by field).
        TypeError: ``spec`` is none of those.
    """
    if isinstance(spec, IR):
        return spec
    if isinstance(spec, Mapping):
        if spec.get("extends") is not None and set(Spec.model_fields) <= set(spec):
            # Every field given: a resolved spec's model_dump(), where extends is a record of its parent.
            spec = {key: value for key, value in spec.items() if key != "extends"}
        if spec.get("extends") is not None:
            raise ValueError(
                "extends is resolved when a spec file is read: write the mapping to a .yaml file and "
                "pass its path, or merge the parent's fields in yourself (load_spec(parent).model_dump())"
            )
        spec = spec_from_data(dict(spec))
    if not isinstance(spec, Spec | str | os.PathLike):
        raise TypeError(
            "spec must be a Spec, a mapping of its fields, a spec file, a preset name or an IR, "
            f"not {type(spec).__name__}"
        )
    return compile_spec(spec if isinstance(spec, Spec) else load_spec(spec), strict=strict)


def state_for(
    ir: IR,
    weights: Weights | None = None,
    *,
    seed: int = 0,
    adapt: bool = False,
    on_report: Callable[[str], None] | None = None,
    backbone: Collection[str] | None = None,
) -> dict[str, Tensor]:
    """The weights for ``ir``: a checkpoint file or a state_dict of any layout (torchvision, timm,
    MONAI), checked key by key; or, without one, the reference initialisation drawn with ``seed``.

    Args:
        adapt: fit the first convolution's input channels and the classifier's size to ``ir``
            (timm's rule; a new classifier drawn with ``seed``) instead of refusing them.
        on_report: called with each line of the load report (layout, adapted tensors).
        backbone: the keys of the backbone that will be used (see :func:`load_report`): a
            backbone's own weights are taken, the rest of the network initialised with ``seed``.

    Raises:
        SpecError: the checkpoint cannot be read safely, or its keys or shapes do not fit ``ir``.
    """
    _check_seed(seed)
    if weights is None:
        return initial_state_dict(ir, seed)
    state, report = load_report(ir, weights, seed=seed, adapt=adapt, backbone=backbone)
    if on_report is not None:
        for line in report.lines():
            on_report(line)
    return initial_state_dict(ir, seed) | state if report.backbone else state


def load_report(
    ir: IR, weights: Weights, *, seed: int | None = 0, adapt: bool = False, backbone: Collection[str] | None = None
) -> tuple[dict[str, Tensor], LoadReport]:
    """The checked (and, with ``adapt``, adapted) state_dict for ``ir``, with the report of what was
    done; ``backbone``: see :func:`~densenet_spec.interop.load_weights`."""
    from .interop import load_weights

    return load_weights(weights, ir, adapt=adapt, seed=seed, backbone=backbone)


SEED_RANGE = (-(2**63), 2**64 - 1)
"""``torch.manual_seed``'s range: 64 bits, a negative seed standing for 2**64 plus it."""


def seed_problem(seed: int) -> str:
    """Why torch cannot take ``seed``, or ``""``: past its range torch fails only once the weights
    are drawn, with ``Overflow when unpacking long long``."""
    low, high = SEED_RANGE
    if low <= seed <= high:
        return ""
    return f"{seed}: out of range: a seed is an integer from -2**63 to 2**64 - 1 ({low} to {high})"


def _check_seed(seed: int | None) -> None:
    if seed is None:
        return
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an integer, not {seed!r}")
    problem = seed_problem(seed)
    if problem:
        raise ValueError(f"seed {problem}")


def initial_state_dict(ir: IR, seed: int) -> dict[str, Tensor]:
    """The torch backend's initial weights for ``seed``."""
    from .backends.torch_module import build_module

    return build_module(ir, seed=seed).state_dict()


@overload
def build_model(
    spec: SpecLike,
    *,
    memory_efficient: bool = ...,
    channels_last: bool = ...,
    seed: int | None = ...,
    weights: Weights | None = ...,
    adapt: bool = ...,
    features_only: Literal[False] = ...,
    out_indices: Sequence[int] | None = ...,
) -> DenseNet: ...


@overload
def build_model(
    spec: SpecLike,
    *,
    memory_efficient: bool = ...,
    channels_last: bool = ...,
    seed: int | None = ...,
    weights: Weights | None = ...,
    adapt: bool = ...,
    features_only: Literal[True],
    out_indices: Sequence[int] | None = ...,
) -> FeatureNet: ...


@overload
def build_model(
    spec: SpecLike,
    *,
    memory_efficient: bool = ...,
    channels_last: bool = ...,
    seed: int | None = ...,
    weights: Weights | None = ...,
    adapt: bool = ...,
    features_only: bool,
    out_indices: Sequence[int] | None = ...,
) -> DenseNet | FeatureNet: ...


def build_model(
    spec: SpecLike,
    *,
    memory_efficient: bool = False,
    channels_last: bool = False,
    seed: int | None = None,
    weights: Weights | None = None,
    adapt: bool = False,
    features_only: bool = False,
    out_indices: Sequence[int] | None = None,
) -> DenseNet | FeatureNet:
    """A ``torch.nn.Module`` of the network, built from the compiled IR alone.

    Args:
        spec: a Spec, a mapping of its fields, a spec file, a preset name, or a compiled IR.
        memory_efficient: recompute the concatenation-BN-ReLU of each dense layer in backward
            instead of storing it (less memory, a little more time in training).
        channels_last: weights and inputs in channels_last (2-D networks only): on this
            project's CPU benchmark a training step takes about 0.8x the time of the default
            layout, and inference is faster too; the computed values are the same (up to float
            rounding), but dropout draws other random masks under one seed.
        seed: seed of the initial weights; the same seed gives the same weights. ``None`` draws
            from torch's global generator.
        weights: a checkpoint file or a state_dict to load (strictly) instead; torchvision, timm
            and MONAI layouts are recognised. ``model.load_report`` says what was read.
        adapt: fit the checkpoint's first convolution to the spec's input channels and replace a
            classifier of another size with a fresh one (listed in ``model.load_report``), as
            fine-tuning needs; without it such a checkpoint is refused.
        features_only: return the backbone: ``forward`` gives the feature maps at each
            resolution (a list), ``feature_info`` their channels, reductions and modules, as
            timm's ``features_only`` models.
        out_indices: with ``features_only``, the taps to return (default: all; 0 is the stem).
    """
    from .backends.taps import backbone_keys
    from .backends.torch_features import build_features
    from .backends.torch_module import build_module

    _check_seed(seed)
    flags = {"memory_efficient": memory_efficient, "channels_last": channels_last, "adapt": adapt}
    _check_flags(**flags, features_only=features_only)
    if adapt and weights is None:
        raise ValueError("adapt=True fits a checkpoint to the spec: give it with weights=")
    if isinstance(out_indices, Iterator):  # read more than once below
        out_indices = tuple(out_indices)
    ir = as_ir(spec)
    if features_only and ir.info.passes:  # the final norm moved into the classifier: not the last map
        raise ValueError(
            "features_only takes the plain network's IR, not an optimised one; build the backbone from "
            "the plain IR, or export it folded with export_onnx(features=..., optimize=True)"
        )
    report = None
    state = None
    if weights is not None:
        keys = backbone_keys(ir, out_indices) if features_only else None
        state, report = load_report(ir, weights, seed=seed, adapt=adapt, backbone=keys)
    partial = report is not None and report.backbone
    model = build_module(ir, memory_efficient=memory_efficient, seed=seed, state_dict=None if partial else state)
    if partial and state is not None:  # a backbone's own weights, checked: the modules it leaves out keep theirs
        model.load_state_dict(state, strict=False)
    model.load_report = report
    if channels_last:
        model.set_channels_last()
    if not features_only:
        if out_indices is not None:
            raise ValueError("out_indices applies to features_only=True")
        return model
    backbone = build_features(model, ir, out_indices)
    backbone.load_report = report
    return backbone


def _check_flags(**flags: object) -> None:
    """A flag given as anything but True or False ("no" is true) is named."""
    for name, value in flags.items():
        if not isinstance(value, bool):
            raise TypeError(f"{name} takes True or False, not {value!r}")


def optimize(
    ir: SpecLike, state: Weights | None = None, *, clamps: bool = True, adapt: bool = False
) -> tuple[IR, dict[str, Any] | None]:
    """The inference passes on ``ir`` (and on its weights, when given).

    Args:
        ir: a compiled IR, or anything :func:`as_ir` compiles (a Spec, a preset name, a file).
        state: the weights to fold: a checkpoint file or a state_dict of any layout that
            :func:`state_for` takes (torchvision, timm, MONAI; a DDP ``module.`` prefix), checked
            against ``ir`` key by key first.
        clamps: False keeps each BN-ReLU before a 1x1 conv as an affine and a ReLU (the ONNX
            target's choice: onnxruntime's fused BN-ReLU is faster than a per-channel clamp).
        adapt: fit the checkpoint's first convolution and classifier to ``ir`` first, as
            :func:`state_for` does.

    Raises:
        SpecError: the weights cannot be read, or their keys or shapes do not fit ``ir``.
    """
    compiled = as_ir(ir)
    checked = None if state is None else state_for(compiled, state, adapt=adapt)
    return _optimized(compiled, checked, clamps)


def _optimized(ir: IR, state: Mapping[str, Any] | None, clamps: bool = True) -> tuple[IR, dict[str, Any] | None]:
    """:func:`optimize` on weights already in ``ir``'s layout."""
    from .passes import INFERENCE_PASSES, NO_CLAMP_PASSES
    from .passes import optimize as run_passes

    result = run_passes(ir, state, INFERENCE_PASSES if clamps else NO_CLAMP_PASSES)
    return result.ir, result.state


def optimize_for_inference(model: DenseNet) -> DenseNet:
    """An eval-only model computing the same function as ``model`` (with its weights), faster.

    The same logits; ``forward_features`` differs from the model's where the final norm's scale
    and shift moved into the classifier (it returns the clamped map before them).

    The inference passes fold every batch norm (into convolutions, clamps and per-channel
    affines) and pool before each transition's 1x1 convolution; the network is then built from the
    optimised IR (2-D networks in channels_last, where CPU convolutions are fastest, with their
    weights reordered once for oneDNN instead of on every call, and on CPU without autograd
    taking a large batch through each dense block a few samples at a time, as many as the cache
    holds, and reusing the memory of its last call where no tensor refers to it any more: the
    dense blocks' buffers, the clamps' and the stem pool's outputs). It keeps ``model``'s device and
    dtype; half-precision weights are folded in float32 first, so that the fold adds no rounding
    of its own beyond the final cast.

    Args:
        model: a model from :func:`build_model`, with any weights loaded (not a ``features_only``
            backbone: optimise the whole model, or export the backbone as it is).
    """
    import torch

    from .backends import torch_runtime
    from .backends.torch_module import build_module
    from .backends.torch_prepack import prepack

    ir = getattr(model, "ir", None)
    if not isinstance(model, torch_runtime.DenseNet) or not isinstance(ir, IR):
        what = "a features_only backbone" if isinstance(ir, IR) else f"a {type(model).__name__}"
        raise TypeError(f"optimize_for_inference takes a model made by densenet_spec.build_model, not {what}")
    weight = next(model.parameters())
    work = torch.promote_types(weight.dtype, torch.float32)
    state = {key: _to_float(value.detach().cpu(), work) for key, value in model.state_dict().items()}
    fast_ir, fast_state = _optimized(ir, state)
    fast = build_module(fast_ir, state_dict=fast_state, dtype=work).eval()
    fast.inference_only = True  # also where nothing was folded (group norm): dropout must stay off
    prepack(fast)
    return fast.to(device=weight.device, dtype=weight.dtype)


def _diagram_problem(given: Mapping[str, Any], ir: IR) -> str:
    """What is wrong with the diagram options' values, or ``""``: the CLI's types (the same
    enums and range) check them there, and a value a drawing does not know was ignored or failed
    deep in it."""
    for name, kind in (("detail", Detail), ("rankdir", RankDir), ("labels", LabelStyle)):
        choices = [member.value for member in kind]
        if name in given and given[name] not in choices:
            return f"{name}: {given[name]!r} is not one of {', '.join(choices)}"
    if "legend" in given and not isinstance(given["legend"], bool):
        return f"legend: True or False, not {given['legend']!r}"
    dpi, (low, high) = given.get("dpi"), DPI_RANGE
    if dpi is not None and (isinstance(dpi, bool) or not isinstance(dpi, int | float) or not low <= dpi <= high):
        return f"dpi: a number from {low} to {high}, not {dpi!r}"
    blocks, count = given.get("blocks"), len(ir.blocks())
    if blocks is None:
        return ""
    numbers = isinstance(blocks, Sequence) and not isinstance(blocks, str) and bool(blocks)
    if not numbers or not all(type(b) is int and 1 <= b <= count for b in blocks):
        return f"blocks: a list of block numbers 1..{count}, not {blocks!r}"
    if len(set(blocks)) != len(blocks):
        return f"blocks: {list(blocks)} names a block twice"
    if given.get("detail") != "layers":
        return "blocks: the blocks to draw apply to detail='layers'"
    return ""


def _files_read(spec: object, weights: object) -> list[str | os.PathLike[str]]:
    """The files behind ``spec`` (a path or a preset's name) and ``weights`` (a checkpoint path)."""
    from .loader import resolve_source

    files: list[str | os.PathLike[str]] = []
    if isinstance(spec, str | os.PathLike):
        with contextlib.suppress(SpecError):  # no such file: nothing to protect; as_ir says what is wrong
            files.append(resolve_source(spec))
    if isinstance(weights, str | os.PathLike):
        files.append(weights)
    return files


def _to_float(value: Tensor, dtype: torch.dtype) -> Tensor:
    return value.to(dtype) if value.is_floating_point() else value


def emit(
    ir: SpecLike,
    target: str,
    options: Mapping[str, Any] | None = None,
    *,
    on_report: Callable[[str], None] | None = None,
) -> bytes | str:
    """What ``build --to TARGET`` writes for ``ir`` (an IR, or any spec that :func:`as_ir` takes).

    ``options`` may hold ``optimize``, ``weights``, ``adapt`` and ``seed`` (handled here) and the
    target's own options (passed on); each must be one that the target declares. A target with
    several ``formats`` (the heat map) also takes ``format``. ``on_report`` gets each line of the
    weights' load report (their layout, what was adapted).
    """
    from .backends import target as find_target

    chosen = find_target(target)
    if options is not None and not isinstance(options, Mapping):
        raise TypeError(f"options must be a mapping of option names to values, not {type(options).__name__}")
    if not isinstance(ir, IR):
        ir = as_ir(ir)  # a Spec, a mapping, a spec file or a preset's name, as elsewhere
    given = dict(options or {})
    unknown = sorted(set(given) - chosen.options - ({"format"} if chosen.formats else set()))
    if unknown:
        verb = "does" if len(unknown) == 1 else "do"
        takes = ", ".join(sorted(chosen.options)) or "no options"
        raise ValueError(f"{', '.join(unknown)} {verb} not apply to the {target} target; it takes {takes}")
    missing = sorted(name for name in chosen.requires if given.get(name) is None)
    if missing:
        raise ValueError(f"--to {target} needs {', '.join('--' + name for name in missing)}")
    if chosen.formats and given.setdefault("format", chosen.formats[0]) not in chosen.formats:
        raise ValueError(f"--to {target} writes {', '.join(chosen.formats)}, not {given['format']}")
    problem = title_problem(given.get("title")) or _diagram_problem(given, ir)
    if problem:
        raise ValueError(problem)
    if chosen.name == "onnx":
        _refuse_for_onnx(ir)  # before state_for: the refusal is about sizes too big to make tensors of
    seed, adapt = given.pop("seed", 0), given.pop("adapt", False)
    if adapt and given.get("weights") is None:
        raise ValueError(f"--adapt fits a checkpoint to the spec: --to {target} needs --weights with it")
    weights = given.pop("weights", None)
    state = None
    if chosen.needs_state:
        from .backends.taps import backbone_keys

        tapped = given.get("features")  # a backbone's own weights serve its export
        backbone = None if tapped is None or weights is None else backbone_keys(ir, tapped, "features")
        state = state_for(ir, weights, seed=seed, adapt=adapt, on_report=on_report, backbone=backbone)
    if given.pop("optimize", False):
        ir, state = _optimized(ir, state, chosen.clamps)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RenderWarning)
        data = chosen.load()(ir, state, given)
    for note in caught:
        if on_report is not None and issubclass(note.category, RenderWarning):
            on_report(f"note: {note.message}")
        else:
            warnings.warn_explicit(note.message, note.category, note.filename, note.lineno, source=note.source)
    return data


def _refuse_for_onnx(ir: IR) -> None:
    """SpecError, located in the spec file where there is one, if an ONNX file cannot hold ``ir``."""
    from .backends.onnx import export_problems

    problems = export_problems(ir)
    if problems:
        raise SpecError(Problem(_locate(ir, p.path), ".".join(p.path), p.message) for p in problems)


def infer_spec(
    state: Mapping[str, Tensor] | str | os.PathLike[str], *, name: str = "inferred", file: str = "<state_dict>"
) -> Spec:
    """The spec of the network whose weights ``state`` holds (a state_dict, or a checkpoint file
    as ``densenet-spec infer`` reads it; torchvision, timm or MONAI layout): what ``densenet-spec
    infer`` writes. See :func:`densenet_spec.infer.infer_spec`.

    Raises:
        SpecError: ``state`` is not the state_dict of a DenseNet that a spec can describe.
        ValueError: ``name`` is not a valid spec name.
    """
    from .infer import infer_spec as infer  # imports torch: on first use, as build_model does

    if isinstance(state, str | os.PathLike):
        from .weights import read_state

        file = os.fspath(state)
        state = read_state(Path(file))
    return infer(state, name=name, file=file)


def _locate(ir: IR, path: tuple[str, ...]) -> Location | None:
    """Where ``path`` is written in the spec file ``ir`` came from (read again: the IR keeps no
    source map), or the file alone, or None for a spec built in Python."""
    source = ir.info.source
    if source.startswith(("<", "preset ")):
        return None if source.startswith("<") else Location(source)
    try:
        return load_spec(source).source.locate(path) or Location(source)
    except SpecError:  # the file changed since it was compiled
        return Location(source)


def export_onnx(
    spec: SpecLike,
    path: str | os.PathLike[str],
    *,
    weights: Weights | None = None,
    state_dict: Weights | None = None,
    opset: int = 17,
    optimize: bool = False,
    seed: int = 0,
    adapt: bool = False,
    features: Sequence[int] | Literal["all"] | None = None,
) -> Path:
    """Write the ONNX model of ``spec`` to ``path`` atomically and return the path.

    Raises:
        ValueError: ``path`` ends in a slash (a folder), names a spec or checkpoint file (by its
            suffix, or the spec or weights file read), or the opset or seed is out of range.
        SpecError: the spec is invalid, or the weights do not fit it.
        ToolError: the file cannot be written (a missing folder, no permission, a full disk).

    Args:
        spec: a Spec, a mapping of its fields, a spec file, a preset name, or a compiled IR.
        weights: a state_dict or a checkpoint file (checked against the spec), as
            :func:`build_model` takes them; default: the torch backend's initialisation with ``seed``.
        state_dict: the same as ``weights`` (its first name); give one of the two.
        opset: the ONNX opset, 13 to the newest the installed onnx knows
            (``backends.onnx.newest_opset()``).
        optimize: apply the optimisation passes (BN folding, pool before the transition conv).
        adapt: fit the checkpoint's first conv and classifier to the spec (see :func:`build_model`).
        features: export the backbone instead: one output per feature tap at these indices
            (``feature0``, ...; 0 is the stem; ``"all"`` for every tap), as
            ``build_model(features_only=True)`` computes them.
    """
    from .backends import suffix_owner
    from .backends.onnx import check_opset
    from .outputs import folder_problem, protected_kind, write_atomic

    problem = folder_problem(os.fspath(path))
    if problem:
        raise ValueError(problem.removeprefix("-o "))
    given = weights if weights is not None else state_dict
    kind = protected_kind(path, _files_read(spec, given))
    if kind:
        raise ValueError(f"{os.fspath(path)}: that names {kind}, which export_onnx does not write; choose another name")
    owner = suffix_owner(Path(path).suffix.lstrip(".").lower())
    if owner not in (None, "onnx"):  # as the CLI's -o: a .json file may be a spec, a .py one source
        raise ValueError(f"{os.fspath(path)}: export_onnx writes an ONNX model, not a file of --to {owner}'s kind")
    if weights is not None and state_dict is not None:
        raise ValueError("weights and state_dict are one argument under two names: give one")
    check_opset(opset)  # before the weights are drawn
    options: dict[str, Any] = {"weights": given, "opset": opset, "optimize": optimize, "seed": seed}
    if adapt:
        options["adapt"] = True
    ir = as_ir(spec)
    if features is not None:
        from .backends.taps import feature_taps, select

        wanted = None if isinstance(features, str) and features == "all" else features  # the CLI's --features all
        try:
            options["features"] = tuple(t.index for t in select(feature_taps(ir), wanted, "features"))
        except TypeError as exc:
            raise TypeError(f'{exc}, or "all"') from None
    data = emit(ir, "onnx", options)
    target = Path(path)
    write_atomic(target, data)
    return target
