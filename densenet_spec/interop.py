"""Checkpoints of torchvision, timm and MONAI into a spec: one loader, adaptation on request.

:func:`load_weights` is the one way weights get into a network (``build_model(weights=...)``, the
CLI's ``--weights``, the ONNX and heat-map targets): it reads a file safely or takes a state_dict,
strips training wrappers and renames the other layouts' keys (:func:`~.weights.canonical_state`),
and checks every key and shape against the IR. With ``adapt=True`` it also fits the two tensors
that fine-tuning usually changes, and says so: the first convolution to another number of input
channels (timm's rule) and a classifier of another size (initialised afresh). Without it, every
mismatch is an error, and the last line says what the checkpoint is (from :func:`~.infer.infer_spec`)
and how to proceed.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .backends.torch_runtime import seeded
from .errors import Location, Problem, SpecError
from .ir import IR
from .weights import Layout, article, at_most, canonical_state, check_state_dict, read_state, unwrap_state

Weights = Mapping[str, Any] | str | os.PathLike[str]
FIRST_CONV = "features.conv0.weight"
CLASSIFIER = ("classifier.weight", "classifier.bias")
MISMATCHES_LISTED = 20  # keys listed before the summary line; the summary counts them all


@dataclass
class LoadReport:
    """What loading a checkpoint did: its layout and every tensor adapted, dropped or made afresh.

    Attributes:
        source: the file, or ``<state_dict>``.
        layout: the layout the keys came in, and how they were renamed.
        adapted: one line per tensor that adaptation changed (empty without ``adapt``).
    """

    source: str
    layout: Layout
    adapted: list[str] = field(default_factory=list)
    backbone: bool = False

    def lines(self) -> list[str]:
        """The report, one line each: what was read, then each adaptation."""
        what = "a backbone's weights only, in the" if self.backbone else "a"
        return [f"{self.source}: read {what} {self.layout.describe()}", *(f"{self.source}: {a}" for a in self.adapted)]


def load_weights(
    weights: Weights, ir: IR, *, adapt: bool = False, seed: int | None = 0, backbone: Collection[str] | None = None
) -> tuple[dict[str, Tensor], LoadReport]:
    """The state_dict for ``ir`` from a checkpoint file or a state_dict, with a report of what was done.

    Args:
        weights: a ``.pt``/``.pth`` file (read with ``weights_only=True``), a ``.safetensors`` file,
            or a state_dict; in the torchvision, timm or MONAI layout, possibly wrapped
            (a :data:`~densenet_spec.weights.WRAPPERS` entry such as ``state_dict``, ``module.``/``model.``
            prefixes).
        ir: the network the weights are for.
        adapt: fit the first convolution's input channels and the classifier's size to ``ir``.
        seed: seed of a classifier initialised afresh; None: torch's global generator.
        backbone: the keys of a ``features_only`` backbone: a checkpoint without some weights
            that only the whole network needs (a backbone's own ``state_dict``, perhaps cut after
            a later tap) is checked against these keys alone, and ``report.backbone`` says so.

    Raises:
        SpecError: the file cannot be read safely, or the weights do not fit ``ir`` (one problem
            per key, then a summary of what the checkpoint is and how to use it).
    """
    if not isinstance(weights, Mapping | str | os.PathLike):
        hint = ": pass model.state_dict()" if isinstance(weights, torch.nn.Module) else ""
        raise TypeError(f"weights must be a checkpoint file or a state_dict, not {type(weights).__name__}{hint}")
    source = "<state_dict>" if isinstance(weights, Mapping) else str(weights)
    raw = unwrap_state(weights, Location(source)) if isinstance(weights, Mapping) else read_state(Path(weights))
    if not raw:  # else every key of the network listed as missing, "of 0"
        raise SpecError([Problem(Location(source), "", "the checkpoint holds no tensors (an empty state_dict)")])
    state, layout = canonical_state(raw)
    keys = frozenset(backbone) if backbone is not None and _only_a_backbone(state, ir, backbone) else None
    report = LoadReport(source, layout, backbone=keys is not None)
    fitted = state
    if adapt:
        fitted, report.adapted = adapt_state(state, ir, seed=seed)
    problems = check_state_dict(fitted, ir, source, keys)
    if problems:  # the summary describes the file as it is, not as adapting left it
        listed = at_most([p.message for p in problems], MISMATCHES_LISTED, "keys that do not fit")
        where = Location(source)
        summary = mismatch_summary(state, problems, ir, source, adapted=adapt)
        raise SpecError([*(Problem(where, "", message) for message in listed), summary])
    if keys is not None:  # the modules past the backbone (a deeper backbone's, checked above; a fresh classifier) go
        fitted = {key: value for key, value in fitted.items() if key in keys}
        report.adapted = [line for line in report.adapted if "classifier." not in line]
    return fitted, report


def _only_a_backbone(state: Mapping[str, Tensor], ir: IR, backbone: Collection[str]) -> bool:
    """Whether ``state`` lacks weights that the whole network needs and the backbone does not (the
    classifier, later blocks): a backbone's own state_dict, perhaps one with more taps."""
    beyond = set(ir.state_shapes()) - set(backbone)
    return any(key not in state for key in beyond if not key.endswith("num_batches_tracked"))


# ----------------------------------------------------------------------------- adaptation


def adapt_state(state: Mapping[str, Tensor], ir: IR, *, seed: int | None = 0) -> tuple[dict[str, Tensor], list[str]]:
    """``state`` with its first convolution and classifier fitted to ``ir``, and one line per change."""
    expected = ir.state_shapes()
    out = dict(state)
    lines: list[str] = []
    first = out.get(FIRST_CONV)
    want = expected.get(FIRST_CONV)
    if first is not None and want is not None and tuple(first.shape) != want and _only_inputs_differ(first, want):
        out[FIRST_CONV] = adapt_input_conv(first, want[1])
        rule = (
            "summed over its input channels" if want[1] == 1 else f"repeated and scaled by {first.shape[1]}/{want[1]}"
        )
        lines.append(f"adapted {FIRST_CONV} from {first.shape[1]} to {want[1]} input channels ({rule}, as timm)")
    lines += _adapt_classifier(out, expected, seed)
    return out, lines


def _only_inputs_differ(weight: Tensor, want: tuple[int, ...]) -> bool:
    shape = tuple(weight.shape)
    return len(shape) == len(want) and shape[0] == want[0] and shape[2:] == want[2:]


def adapt_input_conv(weight: Tensor, channels: int) -> Tensor:
    """timm's ``adapt_input_conv``: to 1 channel, the sum over the input channels; to C, the
    channels repeated to C and scaled by I/C (I = 3 for RGB), so that an image repeated over the
    channels gives the original response."""
    original = weight.shape[1]
    if channels == 1:
        return weight.sum(dim=1, keepdim=True)
    repeats = math.ceil(channels / original)
    repeated = weight.repeat(1, repeats, *(1,) * (weight.dim() - 2))[:, :channels]
    return repeated * (original / channels)


def _adapt_classifier(out: dict[str, Tensor], expected: Mapping[str, tuple[int, ...]], seed: int | None) -> list[str]:
    """Drop a classifier the spec has not, or one of another size, and initialise the spec's afresh."""
    present = [key for key in CLASSIFIER if key in out]
    wanted = [key for key in CLASSIFIER if key in expected]
    if not wanted:
        for key in present:
            del out[key]
        return [f"dropped {', '.join(present)} (the spec has no classifier)"] if present else []
    if all(key in out and tuple(out[key].shape) == expected[key] for key in wanted):
        return []
    old = out.get("classifier.weight")
    before = f"{old.shape[0]} outputs on {old.shape[1]} features" if old is not None and old.dim() == 2 else "none"
    for key in present:
        del out[key]
    classes, features = expected["classifier.weight"]
    out |= fresh_classifier(features, classes, seed, bias="classifier.bias" in expected)
    return [f"initialised {', '.join(wanted)} afresh for {classes} classes on {features} features (was: {before})"]


def fresh_classifier(features: int, classes: int, seed: int | None, *, bias: bool = True) -> dict[str, Tensor]:
    """A classifier as the reference initialisation makes it: torch's Linear weights, bias 0.
    With ``seed`` None, drawn from torch's global generator (as a model built without a seed)."""
    with seeded(seed):
        linear = torch.nn.Linear(features, classes, bias=bias)
    made = {"classifier.weight": linear.weight.detach().clone()}
    return made | ({"classifier.bias": torch.zeros(classes)} if bias else {})


# ----------------------------------------------------------------------------- the summary line


def mismatch_summary(
    state: Mapping[str, Tensor], problems: list[Problem], ir: IR, source: str, *, adapted: bool = False
) -> Problem:
    """The last line of a refusal: what the checkpoint is, and how to use it.

    "the checkpoint is a densenet169-shaped network: blocks 6-12-32-32, k 32; ..." when a spec
    can be inferred from it; otherwise how many keys fit (a checkpoint of another network).
    """
    where = Location(source)
    counts = _counts(problems, len(state))
    tap = _backbone_tap(state, ir)
    if tap is not None and all(p.message.startswith("missing key") for p in problems):
        return Problem(
            where,
            "",
            f"the checkpoint is this network's backbone, cut after tap {tap} (no classifier); {counts}; use it "
            f"with features_only=True and out_indices up to {tap}, or --to onnx --features "
            + ",".join(str(i) for i in range(tap + 1)),
        )
    try:
        from .infer import infer_spec

        spec = infer_spec(state, file=source)
    except SpecError:
        hint = " (a checkpoint of another architecture?)" if len(problems) > len(state) // 2 else ""
        return Problem(where, "", f"the checkpoint does not fit the spec: {counts}{hint}")
    what = describe_checkpoint(spec)
    fixable = not adapted and all(_adaptable(p.message) for p in problems)
    ckpt = source if source != "<state_dict>" else "CKPT"
    infer_hint = f"write the spec it fits with `densenet-spec infer {ckpt} -o spec.yaml`"
    advice = f"pass --adapt (adapt=True) to fit the first conv and the classifier, or {infer_hint}"
    return Problem(where, "", f"{what}; {counts}; {advice if fixable else 'to use it, ' + infer_hint}")


def _backbone_tap(state: Mapping[str, Tensor], ir: IR) -> int | None:
    """The last tap of the backbone of ``ir`` whose weights ``state`` holds exactly, or None."""
    from .backends.taps import backbone_keys, feature_taps

    def counted(keys: Collection[str]) -> set[str]:
        return {key for key in keys if not key.endswith("num_batches_tracked")}

    held = counted(state)
    return next((t.index for t in feature_taps(ir) if counted(backbone_keys(ir, [t.index])) == held), None)


def _counts(problems: list[Problem], keys: int) -> str:
    missing = sum(p.message.startswith("missing key") for p in problems)
    unexpected = sum(p.message.startswith("unexpected key") for p in problems)
    shaped = len(problems) - missing - unexpected
    return f"{missing} missing, {unexpected} unexpected and {shaped} mis-shaped keys of {keys}"


def _adaptable(message: str) -> bool:
    """Whether ``adapt`` fixes this problem: it is about the first conv or the classifier."""
    return any(key in message.split(" ") for key in (FIRST_CONV, *CLASSIFIER))


def describe_checkpoint(spec: Any) -> str:
    """ "the checkpoint is a densenet169-shaped network: blocks 6-12-32-32, k 32 (3 input channels, 1000 classes)"."""
    from .compiler import compile_spec

    blocks = spec.block_configs
    k = sorted({b.growth_rate for b in blocks})
    ks = str(k[0]) if len(k) == 1 else "-".join(str(b.growth_rate) for b in blocks)
    essentials = f"blocks {'-'.join(str(b.layers) for b in blocks)}, k {ks}"
    signature = _signature(compile_spec(spec))
    shaped = next(
        (f"a {name}-shaped network" for name, preset in _preset_signatures() if preset == signature),
        f"a {spec.rank}-D DenseNet with {article(spec.stem.kind)} stem",
    )
    extra = f"{spec.input.channels} input channels, " + (
        f"{spec.num_classes} classes" if spec.num_classes else "no classifier"
    )
    return f"the checkpoint is {shaped}: {essentials} ({extra})"


@functools.cache
def _preset_signatures() -> tuple[tuple[str, Signature], ...]:
    from .compiler import compile_spec
    from .loader import load_spec, preset_names

    return tuple((name, _signature(compile_spec(load_spec(name)))) for name in preset_names())


Signature = tuple[tuple[str, tuple[int, ...]], ...]


def _signature(ir: IR) -> Signature:
    """The shapes of the convolutions, without conv0's input channels: what makes two networks the same shape."""
    shapes = []
    for key, shape in ir.state_shapes().items():
        if key.endswith(".weight") and len(shape) > 2:
            shapes.append((key, (shape[0], *shape[2:]) if key == FIRST_CONV else shape))
    return tuple(shapes)
