"""A spec from a checkpoint: the architecture that its tensor shapes spell out.

A DenseNet's weights tell most of its spec: the rank (weight ranks), the stem (conv0's kernel and
whether conv1/conv2 exist), the growth rate and bottleneck of every block (the dense layers'
convolutions), each transition's compression (its 1x1 convolution), the classifier (or none) and
the kind of norm (running statistics: batch; an affine without them: group or instance). What
leaves no tensor (the activation, dropout, the input size, group count, eps, blur pooling) is
guessed (the defaults; the usual input size of the rank and stem; the largest usual group count)
and listed in :attr:`Inference.unknown`, which the YAML writes as a comment at the top. The
inferred spec is checked by compiling it and comparing every key and shape with the
checkpoint's, so a spec is returned only when the checkpoint loads into it with ``strict=True``.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import yaml
from torch import Tensor

from ._version import __version__
from .compiler import compile_spec
from .errors import Location, Problem, SpecError
from .schema import Spec
from .weights import Layout, canonical_state, unwrap_state

DEFAULT_SIZE: dict[int, int | list[int]] = {1: [1024], 2: 224, 3: [96, 96, 96]}
"""The input size written for each rank (torchvision's 224 in 2-D, the MONAI presets' sizes in 1-D and 3-D)."""
CIFAR_SIZE = 32
"""The input size written for a 2-D network with the cifar stem (the paper's CIFAR and SVHN nets)."""

_LAYER = re.compile(r"^features\.denseblock(\d+)\.denselayer(\d+)\.")


@dataclass(frozen=True)
class Inference:
    """An inferred spec with what the weights could not tell.

    Attributes:
        spec: the spec; the checkpoint loads into it with ``strict=True``.
        unknown: one line per field left at a default or chosen among equals (``field: why``).
        layout: the checkpoint's key layout (torchvision, timm or MONAI).
    """

    spec: Spec
    unknown: tuple[str, ...]
    layout: Layout


@dataclass(frozen=True)
class _Block:
    layers: int
    growth_rate: int
    bottleneck_width: int | None


def infer_spec(state: Mapping[str, Tensor], *, name: str = "inferred", file: str = "<state_dict>") -> Spec:
    """The spec of the network whose weights ``state`` holds (any of the torchvision, timm and MONAI layouts).

    Raises:
        SpecError: ``state`` is not the state_dict of a DenseNet that a spec can describe.
    """
    return infer(state, name=name, file=file).spec


def infer(state: Mapping[str, Tensor], *, name: str = "inferred", file: str = "<state_dict>") -> Inference:
    """:func:`infer_spec`, with the fields the weights cannot tell and the checkpoint's layout.

    Raises:
        ValueError: ``name`` is not a valid spec name.
    """
    problem = name_problem(name)
    if problem:
        raise ValueError(f"name {problem}")
    canonical, layout = canonical_state(unwrap_state(state, Location(file)))
    shapes = {key: tuple(value.shape) for key, value in canonical.items()}
    where = Location(file)
    reader = _Reader(shapes, where)
    data, unknown = reader.spec_data(name, layout)
    spec = _validated(data, where)
    _check_fits(spec, shapes, where)
    return Inference(spec, tuple(unknown), layout)


def name_problem(name: str) -> str:
    """Why ``name`` cannot name a spec (with a valid one to use instead), or ``""``."""
    rule = _name_rule()
    if rule["minLength"] <= len(name) <= rule["maxLength"] and re.fullmatch(rule["pattern"], name):
        return ""
    allowed = rule["description"].split(": ", 1)[-1].rstrip(".")
    return (
        f"{name!r}: a spec name is {rule['minLength']} to {rule['maxLength']} characters, "
        f"{allowed} ({rule['pattern']}); e.g. {clean_name(name)}"
    )


def clean_name(text: str) -> str:
    """``text`` as a valid spec name: lower case, other characters as '-', no separator at either
    end, cut to the longest allowed; ``inferred`` if nothing of it is left."""
    rule = _name_rule()
    cleaned = re.sub(r"[^a-z0-9._-]+", "-", text.lower()).strip("-._")[: rule["maxLength"]].rstrip("-._")
    return cleaned if re.fullmatch(rule["pattern"], cleaned) else "inferred"


def _name_rule() -> dict[str, Any]:
    """The schema's rule for a spec's ``name`` (pattern, lengths, description), read rather than repeated."""
    rule: dict[str, Any] = Spec.model_json_schema()["properties"]["name"]
    return rule


def _validated(data: dict[str, Any], where: Location) -> Spec:
    try:
        return Spec.model_validate(data)
    except ValueError as exc:  # shapes no spec can describe (a compression above 1, ...)
        raise SpecError([Problem(where, "", f"cannot infer a spec: {str(exc).splitlines()[0]}")]) from None


def _check_fits(spec: Spec, shapes: Mapping[str, tuple[int, ...]], where: Location) -> None:
    """The inferred spec must have exactly the checkpoint's keys and shapes."""
    try:
        expected = compile_spec(spec).state_shapes()
    except SpecError as exc:
        raise SpecError([Problem(where, "", f"cannot infer a spec: {exc.problems[0].message}")]) from None
    wrong = sorted(
        key
        for key in set(expected) | set(shapes)
        if expected.get(key) != shapes.get(key) and not (key.endswith("num_batches_tracked") and key not in shapes)
    )
    if not wrong:
        return
    listed = ", ".join(wrong[:3]) + (f" (and {len(wrong) - 3} more)" if len(wrong) > 3 else "")
    if all(key not in shapes for key in wrong):  # all there is fits; the network goes on past it
        message = (
            f"the checkpoint ends before {listed}, which a whole DenseNet of these tensors has "
            "(a backbone cut after one of its taps?): a spec needs the whole network's weights"
        )
    else:
        message = f"the tensors do not follow a DenseNet's arithmetic at {listed}"
    raise SpecError([Problem(where, "", f"cannot infer a spec: {message}")])


class _Reader:
    """Reads the spec's fields off the tensor shapes, one concern a method."""

    def __init__(self, shapes: Mapping[str, tuple[int, ...]], where: Location) -> None:
        self.shapes = shapes
        self.where = where

    def fail(self, message: str) -> SpecError:
        return SpecError([Problem(self.where, "", f"cannot infer a spec: {message}")])

    def shape(self, key: str) -> tuple[int, ...]:
        if key not in self.shapes:
            raise self.fail(f"no {key} (is this a DenseNet's state_dict?)")
        return self.shapes[key]

    def spec_data(self, name: str, layout: Layout) -> tuple[dict[str, Any], list[str]]:
        conv0 = self.shape("features.conv0.weight")
        rank = len(conv0) - 2
        if rank not in (1, 2, 3):
            raise self.fail(f"features.conv0.weight has {len(conv0)} dimensions; a DenseNet's has 3, 4 or 5")
        blocks = self.blocks()
        stem = self.stem(conv0)
        norm, unknown = self.norm()
        channels = self.final_channels(stem["channels"], blocks)
        head, num_classes = self.head(channels, unknown)
        data: dict[str, Any] = {
            "name": name,
            "description": f"inferred from a {layout.name}-layout checkpoint by densenet-spec {__version__}",
            "input": {"channels": conv0[1], "size": self.input_size(rank, stem["kind"], len(blocks))},
            "stem": stem,
        }
        data |= self.block_fields(blocks)
        if norm != "batch":
            data["norm"] = norm
        if head:
            data["head"] = head
        data["num_classes"] = num_classes
        unknown += self.defaults(layout, rank, data["input"]["size"])
        return data, unknown

    # --- stem
    def stem(self, conv0: tuple[int, ...]) -> dict[str, Any]:
        kernel = conv0[2:]
        if "features.conv1.weight" in self.shapes:
            conv1, conv2 = self.shape("features.conv1.weight"), self.shape("features.conv2.weight")
            return {"kind": "deep", "channels": conv2[0], "mid_channels": [conv0[0], conv1[0]]}
        if set(kernel) == {7}:
            return {"kind": "imagenet", "channels": conv0[0]}
        if set(kernel) == {3}:
            if any(key.startswith("features.norm0.") for key in self.shapes):
                raise self.fail("a 3x3 conv0 followed by norm0 is no stem a spec describes (cifar has no norm0)")
            return {"kind": "cifar", "channels": conv0[0]}
        raise self.fail(f"conv0 has a {'x'.join(map(str, kernel))} kernel; stems have 7x7 (imagenet) or 3x3")

    # --- blocks and transitions
    def blocks(self) -> list[_Block]:
        layers: dict[int, set[int]] = {}
        for key in self.shapes:
            found = _LAYER.match(key)
            if found:
                layers.setdefault(int(found.group(1)), set()).add(int(found.group(2)))
        if not layers:
            raise self.fail("no dense layers (features.denseblockI.denselayerJ)")
        if sorted(layers) != list(range(1, len(layers) + 1)):
            raise self.fail(f"dense blocks {sorted(layers)} are not numbered 1..{len(layers)}")
        return [self.block(b, layers[b]) for b in sorted(layers)]

    def block(self, number: int, layers: set[int]) -> _Block:
        if sorted(layers) != list(range(1, len(layers) + 1)):
            raise self.fail(f"denseblock{number}'s layers are not numbered 1..{len(layers)}")
        prefix = f"features.denseblock{number}.denselayer1"
        conv1 = self.shape(f"{prefix}.conv1.weight")
        conv2 = self.shapes.get(f"{prefix}.conv2.weight")
        if conv2 is None:
            return _Block(len(layers), conv1[0], None)
        k = conv2[0]
        if conv1[0] % k:
            raise self.fail(f"{prefix}.conv1 has {conv1[0]} outputs, not a multiple of the growth rate {k}")
        return _Block(len(layers), k, conv1[0] // k)

    def transitions(self, count: int) -> list[tuple[int, int]]:
        """(kept, of) maps of each transition's 1x1 convolution."""
        out = []
        for b in range(1, count):
            weight = self.shape(f"features.transition{b}.conv.weight")
            out.append((weight[0], weight[1]))
        return out

    def block_fields(self, blocks: list[_Block]) -> dict[str, Any]:
        """growth_rate, blocks, bottleneck_width and compression: the most common value spec-wide,
        a block's own where it differs."""
        k = _most_common([b.growth_rate for b in blocks])
        width = _most_common([b.bottleneck_width for b in blocks])
        kept = self.transitions(len(blocks))
        thetas = [_shortest_theta(out, m) for out, m in kept]
        theta = _common_theta(kept, thetas)
        items: list[Any] = []
        for i, block in enumerate(blocks):
            own: dict[str, Any] = {}
            if block.growth_rate != k:
                own["growth_rate"] = block.growth_rate
            if block.bottleneck_width != width:
                own["bottleneck_width"] = block.bottleneck_width
            if i < len(kept) and not _fits(theta, *kept[i]):
                own["compression"] = thetas[i]
            items.append({"layers": block.layers, **own} if own else block.layers)
        out: dict[str, Any] = {"growth_rate": k, "blocks": items, "bottleneck_width": width}
        return out | ({"compression": theta} if theta != 0.5 else {})

    def final_channels(self, stem: int, blocks: list[_Block]) -> int:
        channels = stem
        for b, block in enumerate(blocks, start=1):
            channels += block.layers * block.growth_rate
            if b < len(blocks):
                channels = self.shape(f"features.transition{b}.conv.weight")[0]
        return channels

    # --- norm and head
    def norm(self) -> tuple[Any, list[str]]:
        """The norm kind, from the first dense layer's first norm."""
        prefix = "features.denseblock1.denselayer1.norm1."
        has = {key.removeprefix(prefix) for key in self.shapes if key.startswith(prefix)}
        if "running_mean" in has:
            return ("batch" if "weight" in has else {"kind": "batch", "affine": False}), []
        if "weight" in has:
            groups = self.group_count()
            return {"kind": "group", "groups": groups}, [
                f"norm: group with {groups} groups (an affine norm without running statistics is a group or an "
                "instance norm with affine=true; the weights tell neither which nor the group count)"
            ]
        return "none", [
            "norm: none (no norm tensors: also an instance norm without affine, as MONAI's norm='instance')"
        ]

    def group_count(self) -> int:
        """The largest usual group count that divides every norm's channels (GroupNorm's default 32 first)."""
        widths = {shape[0] for key, shape in self.shapes.items() if key.endswith(".weight") and len(shape) == 1}
        widths.discard(0)
        return next(g for g in (32, 16, 8, 4, 2, 1) if all(w % g == 0 for w in widths))

    def head(self, channels: int, unknown: list[str]) -> tuple[dict[str, Any], int]:
        weight = self.shapes.get("classifier.weight")
        if weight is None:
            unknown.append("head.pool: avg (no classifier: the pooling leaves no tensor)")
            return {}, 0
        if weight[1] == 2 * channels:
            return {"pool": "catavgmax"}, weight[0]
        if weight[1] != channels:
            raise self.fail(f"the classifier takes {weight[1]} features; the last block gives {channels}")
        unknown.append("head.pool: avg (avg, max and avgmax have the same weights)")
        return {}, weight[0]

    # --- what the weights do not tell
    def input_size(self, rank: int, stem: str, blocks: int) -> Any:
        """The usual size for the rank (CIFAR's 32 for a 2-D cifar stem), enlarged where the network
        would shrink a map to nothing."""
        stride = (1 if stem == "cifar" else 4) * 2 ** (blocks - 1)
        default = CIFAR_SIZE if rank == 2 and stem == "cifar" else DEFAULT_SIZE[rank]
        side = default if isinstance(default, int) else default[0]
        if 2 * stride <= side:
            return default
        bigger = 2 * stride
        return bigger if rank == 2 else [bigger] * rank

    def defaults(self, layout: Layout, rank: int, size: Any) -> list[str]:
        blur = [key for key in layout.dropped if key.endswith(".filt")]
        anti_alias = "anti_alias: none (blur pooling leaves no tensor in a state_dict)"
        if blur:
            anti_alias = "anti_alias: " + ("all" if any("transition" in k for k in blur) else "stem") + " would fit"
            anti_alias += " the old timm blur filters found; left at none: set it"
        written = size if isinstance(size, int) else "x".join(map(str, size))
        return [
            f"input.size: {written} (the weights fit any size; MACs are counted at this one)",
            "activation: relu (activations have no weights)",
            "dropout, head.dropout: 0.0 (no weights)",
            "norm eps and momentum: torch's defaults",
            anti_alias,
        ]


def _most_common(values: list[Any]) -> Any:
    """The most common value; among equals, the first seen."""
    return Counter(values).most_common(1)[0][0]


def _fits(theta: float, kept: int, of: int) -> bool:
    """Whether a transition of ``of`` maps with this θ keeps ``kept`` (the compiler's floor, exactly)."""
    return bool(Fraction(repr(theta)) * of // 1 == kept)


def _shortest_theta(kept: int, of: int) -> float:
    """The decimal with the fewest digits whose floor(θ * of) is ``kept``: 0.5 rather than 0.50390625."""
    if kept >= of:
        return 1.0
    low, high = Fraction(kept, of), Fraction(kept + 1, of)
    for digits in range(1, 18):
        scale = 10**digits
        candidate = Fraction(-(-low * scale // 1), scale)  # ceil to this many digits
        if low <= candidate < high:
            return float(candidate)
    return float(low)


def _common_theta(kept: list[tuple[int, int]], thetas: list[float]) -> float:
    """The spec-wide θ: the candidate that fits the most transitions (0.5, the default, wins ties)."""
    if not kept:
        return 0.5
    candidates = [0.5, *dict.fromkeys(thetas)]
    return max(candidates, key=lambda theta: sum(_fits(theta, *pair) for pair in kept))


def to_yaml(inference: Inference, source: str = "") -> str:
    """The spec as YAML, headed by a comment listing what the weights could not tell."""
    spec = inference.spec
    data = spec.model_dump(mode="json", exclude_unset=True, exclude={"extends"})
    origin = f" from {source}" if source else ""
    lines = [
        f"# Inferred by densenet-spec {__version__}{origin} ({inference.layout.describe()}).",
        "# The weights do not tell these; each is a default or a guess, check it:",
        *(f"#   {line}" for line in inference.unknown),
    ]
    body = yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=100)
    return "\n".join(lines) + "\n" + body
