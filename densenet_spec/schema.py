"""The spec format (v1) as pydantic models.

The models are strict (``4.5`` layers is an error, not 4; ``"32"`` is not a number), reject
unknown keys and are immutable. Every field carries a description, so that
``densenet-spec schema`` emits a JSON Schema that editors use for completion and hover help.
Defaults that depend on other fields (the stem's width) are resolved by accessors, not stored,
so that a child spec that changes ``growth_rate`` still gets a stem of ``2 * growth_rate``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PrivateAttr,
    Tag,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from .errors import Location

PositiveInt = Annotated[int, Field(ge=1)]
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
"""Every float of the spec: NaN and infinity would build a network that outputs NaN, and
generated source that names a bare ``nan``."""

FieldPath = tuple[str | int, ...]

NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]*$"  # a first '.' or '-' makes hidden files and options: '.onnx', '-.py'
MAX_NAME = 128

RANGES: dict[str, str] = {
    "growth_rate": "an integer >= 1",
    "blocks": "an integer >= 1",
    "layers": "an integer >= 1",
    "bottleneck_width": "an integer >= 1",
    "channels": "an integer >= 1",
    "mid_channels": "an integer >= 1",
    "size": "an integer >= 1",
    "groups": "an integer >= 1",
    "num_classes": "an integer >= 0 (0: no classifier)",
    "compression": "0 < compression <= 1",
    "dropout": "0 <= dropout < 1",
    "eps": "0 < eps < 1",
    "momentum": "0 < momentum <= 1",
    "alpha": "finite and > 0, e.g. 1.0",
    "negative_slope": "finite, e.g. 0.01 or 0.2",
}
"""What each numeric field accepts, by field name, as messages state it (``must be ...``).

Kept next to the models so that a new numeric field gets its own text; a test checks that every
numeric field of the schema has one.
"""


@dataclass(frozen=True)
class SourceMap:
    """Where each field of a spec was written, filled in by the loader.

    ``values`` locates a field's value (scalars) or its key (nested mappings and lists);
    ``keys`` locates the key itself, for errors about the key (unknown, duplicate).
    """

    values: dict[FieldPath, Location] = field(default_factory=dict)
    keys: dict[FieldPath, Location] = field(default_factory=dict)
    texts: dict[FieldPath, str] = field(default_factory=dict)
    quoted: set[FieldPath] = field(default_factory=set)
    """The text of each unquoted scalar that YAML read as something else than a string
    (``yes``, ``2024-01-01``), for messages that tell the user to quote it."""

    def locate(self, path: FieldPath, *, key: bool = False) -> Location | None:
        """The place of ``path``, or of its nearest written parent."""
        if key and path in self.keys:
            return self.keys[path]
        for end in range(len(path), -1, -1):
            if path[:end] in self.values:
                return self.values[path[:end]]
        return None


def format_path(path: FieldPath) -> str:
    """``("blocks", 2, "growth_rate")`` as ``blocks[2].growth_rate``."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


def field_error(path: FieldPath, message: str, more: list[tuple[FieldPath, str]] | None = None) -> PydanticCustomError:
    """An error about the field at ``path`` (relative to the model that raises it).

    A model validator's ValueError is located at the model as a whole; this one carries the
    field, so that the loader can point at that key's line and name it. A validator raises one
    error; ``more`` carries the other fields' (path, message), which the loader reports as
    problems of their own (every unused parameter of a mapping, not the first only).
    """
    return PydanticCustomError("field_error", "{message}", {"message": message, "path": path, "more": more or []})


def unused_params(
    kind: str,
    given: set[str],
    params_of: Mapping[str, tuple[str, ...]],
    noun: str = "",
    notes: Mapping[str, str] | None = None,
) -> None:
    """Refuse every parameter in ``given`` that ``kind`` does not use, naming the kinds that do.

    ``params_of`` is the table of which kind takes which parameter: a parameter that would have no
    effect is an error, not silently ignored, so that a spec never says more than the network does.
    ``notes`` explains a parameter whose owner is not obvious.
    """
    used = params_of.get(kind, ())
    unused: list[tuple[FieldPath, str]] = [
        ((name,), other_kind_message(name, kind, params_of, noun, (notes or {}).get(name, "")))
        for name in sorted(given - {"kind"} - set(used))
    ]
    if unused:
        (path, message), *more = unused
        raise field_error(path, message, more)


def other_kind_message(
    name: str, kind: str, params_of: Mapping[str, tuple[str, ...]], noun: str, note: str = ""
) -> str:
    """``mid_channels applies to deep stems only, not cifar; remove it``: a parameter of other kinds.

    One wording for every field with kinds (norm, activation, stem), whether the schema's
    validator or the unknown-key message finds the parameter.
    """
    owners = [k for k, params in params_of.items() if name in params]
    return f"{name} applies to {_join(owners)}{noun} only{note}, not {kind}; remove it"


def _join(words: list[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    return " and ".join(words) if len(words) < 3 else f"{', '.join(words[:-1])} and {words[-1]}"


def _size_tag(value: Any) -> str:
    return "list" if isinstance(value, list | tuple) else "int"


Size = Annotated[
    Annotated[PositiveInt, Tag("int")]
    | Annotated[
        list[PositiveInt],
        Tag("list"),
        Field(min_length=1, max_length=3),
    ],
    Discriminator(_size_tag),
]


class InputSpec(_Model):
    """The images (or volumes, or signals) the network takes."""

    channels: PositiveInt = Field(3, description="Channels of the input (3 for RGB, 1 for CT or MRI).")
    size: Size = Field(
        224,
        description="Input size: one integer for a square image, or a list of 1, 2 or 3 numbers "
        "([length], [height, width] or [depth, height, width]) for a 1-D, 2-D or 3-D network. "
        "Costs (MACs) are counted at this size.",
    )

    @property
    def shape(self) -> tuple[int, ...]:
        """The spatial size, one entry per axis; its length is the network's rank (1, 2 or 3)."""
        if isinstance(self.size, int):
            return (self.size, self.size)
        return tuple(self.size)

    @property
    def hw(self) -> tuple[int, ...]:
        """The spatial size (kept for v1 callers; same as :attr:`shape`)."""
        return self.shape


_STEM_CHANNELS = "Output channels of the stem (its last convolution). Default: 2 * growth_rate."


class _StemModel(_Model):
    """A stem of one kind; a null for a key of another kind is no key at all.

    A child spec that changes its parent's stem kind inherits the parent's stem keys; ``null``
    resets an inherited key, and for a key the new kind does not have, that means dropping it.
    """

    @model_validator(mode="before")
    @classmethod
    def _drop_nulls_of_other_kinds(cls, data: Any) -> Any:
        if isinstance(data, dict):  # only a key of some stem kind: a misspelt one stays an error
            return {k: v for k, v in data.items() if v is not None or k in cls.model_fields or k not in STEM_KEYS}
        return data


class ImagenetStem(_StemModel):
    """conv 7x7 stride 2, norm, activation, max-pool 3x3 stride 2: a quarter of the input size."""

    kind: Literal["imagenet"] = Field("imagenet", description="imagenet: conv7x7/2-norm-act-maxpool3x3/2.")
    channels: PositiveInt | None = Field(None, description=_STEM_CHANNELS)


class CifarStem(_StemModel):
    """A single conv 3x3 stride 1; the first dense layer's norm follows it."""

    kind: Literal["cifar"] = Field(description="cifar: one conv3x3/1, full resolution.")
    channels: PositiveInt | None = Field(None, description=_STEM_CHANNELS)


class DeepStem(_StemModel):
    """timm's ``stem_type='deep'``: three 3x3 convolutions (the first stride 2), then max-pool 3x3/2."""

    kind: Literal["deep"] = Field(description="deep: conv3x3/2-norm-act, conv3x3-norm-act, conv3x3-norm-act, maxpool.")
    channels: PositiveInt | None = Field(None, description=_STEM_CHANNELS)
    mid_channels: Annotated[list[PositiveInt], Field(min_length=2, max_length=2)] | None = Field(
        None, description="Widths of the first two convolutions. Default: [growth_rate, growth_rate], as timm."
    )


def _stem_tag(value: Any) -> str | None:
    if isinstance(value, dict):
        kind = value.get("kind", "imagenet")
        return kind if isinstance(kind, str) else None
    if isinstance(value, BaseModel):
        return str(getattr(value, "kind", ""))
    return None


STEM_KINDS = ("imagenet", "cifar", "deep")
STEM_MODELS: tuple[type[_StemModel], ...] = (ImagenetStem, CifarStem, DeepStem)
STEM_KEYS = frozenset(key for model in STEM_MODELS for key in model.model_fields)
STEM_PARAMS = {
    kind: tuple(key for key in model.model_fields if key != "kind")
    for kind, model in zip(STEM_KINDS, STEM_MODELS, strict=True)
}
"""The keys each stem kind takes besides ``kind`` (a stem model forbids the others as unknown keys)."""

Stem = Annotated[
    Annotated[ImagenetStem, Tag("imagenet")] | Annotated[CifarStem, Tag("cifar")] | Annotated[DeepStem, Tag("deep")],
    Discriminator(
        _stem_tag,
        custom_error_type="stem_kind",
        custom_error_message="stem.kind must be one of 'imagenet', 'cifar', 'deep'",
    ),
]

ACTIVATION_KINDS = ("relu", "relu6", "leaky_relu", "elu", "gelu", "silu", "mish", "hardswish")
ACTIVATION_PARAMS = {"leaky_relu": ("negative_slope",), "elu": ("alpha",), "gelu": ("approximate",)}


class ActivationSpec(_Model):
    """An activation and its parameters (each as torch's module of that name takes it)."""

    kind: Literal["relu", "relu6", "leaky_relu", "elu", "gelu", "silu", "mish", "hardswish"] = Field(
        "relu", description="The activation function."
    )
    negative_slope: FiniteFloat | None = Field(None, description="leaky_relu only: the slope below 0. Default 0.01.")
    alpha: FiniteFloat | None = Field(
        None, gt=0, description="elu only: the value approached below 0 is -alpha. Default 1."
    )
    approximate: Literal["none", "tanh"] | None = Field(
        None, description="gelu only: 'none' (exact, erf) or 'tanh'. Default 'none'."
    )

    @model_validator(mode="after")
    def _params_of_kind(self) -> ActivationSpec:
        given = {name for name in self.model_fields_set if getattr(self, name) is not None}
        unused_params(self.kind, given, ACTIVATION_PARAMS)
        return self

    def args(self) -> tuple[tuple[str, float | str], ...]:
        """The parameters with their defaults, as the IR records them."""
        defaults: dict[str, dict[str, float | str]] = {
            "leaky_relu": {"negative_slope": 0.01},
            "elu": {"alpha": 1.0},
            "gelu": {"approximate": "none"},
        }
        given = {k: getattr(self, k) for k in ACTIVATION_PARAMS.get(self.kind, ()) if getattr(self, k) is not None}
        return tuple((defaults.get(self.kind, {}) | given).items())


NORM_KINDS = ("batch", "group", "instance", "none")
NORM_PARAMS = {
    "batch": ("eps", "momentum", "affine"),
    "group": ("groups", "eps", "momentum", "affine"),
    "instance": ("eps", "momentum", "affine"),
    "none": (),
}
"""The parameters each norm kind takes. eps, momentum and affine are the normalising kinds' common
fields (design.md's example gives group norm all of them; momentum moves running statistics, so it
changes nothing for group norm or for instance norm without them); groups is group norm's alone,
and ``none`` takes nothing."""


class NormSpec(_Model):
    """A normalisation layer, with torch's defaults for its kind."""

    kind: Literal["batch", "group", "instance", "none"] = Field(
        "batch", description="batch (BatchNorm), group (GroupNorm), instance (InstanceNorm) or none."
    )
    groups: PositiveInt | None = Field(None, description="group only: the number of groups. Default 32.")
    eps: FiniteFloat = Field(
        1e-5, gt=0, lt=1, description="batch, group and instance: added to the variance for numerical stability."
    )
    momentum: FiniteFloat = Field(
        0.1,
        gt=0,
        le=1,
        description="the running statistics' update rate (batch norm; group and instance norm keep none).",
    )
    affine: bool | None = Field(
        None, description="Learnable scale and shift. Default: true for batch and group, false for instance (as torch)."
    )

    @model_validator(mode="after")
    def _params_of_kind(self) -> NormSpec:
        # An explicit `groups: null` is the default, not a parameter given.
        given = {name for name in self.model_fields_set if getattr(self, name) is not None}
        unused_params(self.kind, given, NORM_PARAMS, " norm")
        return self

    @property
    def is_affine(self) -> bool:
        return self.affine if self.affine is not None else self.kind in ("batch", "group")

    @property
    def group_count(self) -> int:
        return self.groups if self.groups is not None else 32


class HeadSpec(_Model):
    """What follows the last block's norm and activation: global pooling, dropout, the classifier."""

    pool: Literal["avg", "max", "avgmax", "catavgmax"] = Field(
        "avg",
        description="Global pooling: avg, max, avgmax (their mean) or catavgmax (both, concatenated: "
        "twice the classifier's input).",
    )
    dropout: FiniteFloat = Field(0.0, ge=0, lt=1, description="Dropout rate before the classifier.")


class BlockSpec(_Model):
    """A dense block written as a mapping: its size, and any network-wide value it overrides."""

    layers: PositiveInt = Field(description="Number of dense layers in the block.")
    growth_rate: PositiveInt | None = Field(
        None, description="Feature maps each layer of this block adds. Default: the spec's growth_rate."
    )
    bottleneck_width: PositiveInt | None = Field(
        None, description="This block's bottleneck width; null: no bottleneck. Default: the spec's."
    )
    dropout: FiniteFloat | None = Field(None, ge=0, lt=1, description="This block's dropout rate. Default: the spec's.")
    compression: FiniteFloat | None = Field(
        None, gt=0, le=1, description="theta of the transition after this block. Default: the spec's."
    )


def _block_tag(value: Any) -> str:
    return "mapping" if isinstance(value, dict | BlockSpec) else "int"


Block = Annotated[
    Annotated[PositiveInt, Tag("int")] | Annotated[BlockSpec, Tag("mapping")],
    Discriminator(_block_tag),
]


@dataclass(frozen=True)
class BlockConfig:
    """One block's settings, network-wide defaults filled in."""

    layers: int
    growth_rate: int
    bottleneck_width: int | None
    dropout: float
    compression: float


def _kind_shorthand(value: Any) -> Any:
    """``activation: silu`` means ``activation: {kind: silu}``."""
    return {"kind": value} if isinstance(value, str) else value


class Spec(_Model):
    """A DenseNet variant: what densenet-spec validates, compiles, builds and draws."""

    model_config = ConfigDict(
        title="densenet-spec v1.1",
        json_schema_extra={"description": "A DenseNet-family architecture (densenet-spec format v1.1)."},
    )

    name: str = Field(
        pattern=NAME_PATTERN,
        min_length=1,
        max_length=MAX_NAME,
        description="Identifier of the variant: lower-case letters, digits, '.', '_' and '-', "
        "starting with a letter or digit.",
    )
    description: str = Field("", description="Free text: what the variant is and where it comes from.")
    extends: str | None = Field(
        None,
        description="A preset name, or a path ending in .yaml or .yml, relative to this file, whose keys this "
        "spec overrides (mappings merge key by key, lists replace).",
    )
    input: InputSpec = Field(default_factory=InputSpec, description="The input images.")  # type: ignore[arg-type]
    stem: Stem = Field(default_factory=ImagenetStem, description="The layers before the first dense block.")  # type: ignore[arg-type]
    growth_rate: PositiveInt = Field(description="k: feature maps each dense layer adds.")
    blocks: list[Block] = Field(
        min_length=1,
        description="Dense blocks, in order: the number of layers of each, or {layers, growth_rate}.",
    )
    bottleneck_width: PositiveInt | None = Field(
        4,
        description="DenseNet-B: a 1x1 convolution to bottleneck_width * k maps before each 3x3; null for none.",
    )
    compression: FiniteFloat = Field(
        0.5,
        gt=0,
        le=1,
        description="theta (DenseNet-C): a transition keeps floor(theta * m) of its m maps; 1.0 for none.",
    )
    dropout: FiniteFloat = Field(0.0, ge=0, lt=1, description="Dropout rate after each dense layer's 3x3 conv.")
    activation: ActivationSpec = Field(
        default_factory=ActivationSpec,  # type: ignore[arg-type]
        description="The activation everywhere: a name (relu, relu6, leaky_relu, elu, gelu, silu, mish, "
        "hardswish) or a mapping with its parameters, e.g. {kind: leaky_relu, negative_slope: 0.1}.",
    )
    norm: NormSpec = Field(
        default_factory=NormSpec,  # type: ignore[arg-type]
        description="The normalisation everywhere: batch, group, instance or none, or a mapping, e.g. "
        "{kind: group, groups: 8}.",
    )
    anti_alias: Literal["none", "stem", "all"] = Field(
        "none",
        description="timm's blur pooling: none; stem (max-pool stride 1 then a binomial blur stride 2; not with "
        "the cifar stem, which has no pool); all (also a blur stride 2 instead of each transition's average "
        "pool). 2-D networks only in timm.",
    )
    head: HeadSpec = Field(default_factory=HeadSpec, description="Global pooling and dropout before the classifier.")  # type: ignore[arg-type]
    num_classes: int = Field(
        1000, ge=0, description="Outputs of the final linear layer; 0: no classifier (the pooled features)."
    )

    _source: SourceMap = PrivateAttr(default_factory=SourceMap)

    @field_validator("activation", "norm", mode="before")
    @classmethod
    def _kind_shorthand(cls, value: Any) -> Any:
        return _kind_shorthand(value)

    @field_validator("stem", mode="before")
    @classmethod
    def _stem_shorthand(cls, value: Any) -> Any:
        # `stem: cifar` is what people write first; it means `stem: {kind: cifar}`.
        return {"kind": value} if isinstance(value, str) and value in STEM_KINDS else value

    @field_validator("name", "description", mode="before")
    @classmethod
    def _text_only(cls, value: Any) -> Any:
        # A lone surrogate ("\ud800" in YAML or Python) is not text: pydantic's own message for it
        # is about parsing raw data, and the backends would fail to encode it later.
        if isinstance(value, str):
            bad = next((c for c in value if "\ud800" <= c <= "\udfff"), None)
            if bad is not None:
                raise ValueError(f"holds a lone surrogate (U+{ord(bad):04X}), which is not a character")
        return value

    @model_validator(mode="after")
    def _no_pending_extends(self, info: ValidationInfo) -> Spec:
        # The loader resolves `extends` before validation and keeps the field only as a record.
        # A Spec built in Python with `extends` set would silently ignore the parent.
        resolved = isinstance(info.context, dict) and info.context.get("extends_resolved")
        if self.extends is not None and not resolved:
            raise ValueError("extends is resolved by the loader: use load_spec() for a spec that extends another")
        return self

    @model_validator(mode="after")
    def _stem_blur_has_a_pool(self) -> Spec:
        if self.anti_alias == "stem" and self.stem.kind == "cifar":
            raise field_error(
                ("anti_alias",),
                "'stem' blurs the stem's max pool, and the cifar stem has none (it would change nothing); "
                "use none, or all to blur the transitions, or the imagenet or deep stem",
            )
        return self

    @property
    def rank(self) -> int:
        """Spatial dimensions of the network: 1, 2 or 3."""
        return len(self.input.shape)

    @property
    def stem_channels(self) -> int:
        return self.stem.channels if self.stem.channels is not None else 2 * self.growth_rate

    @property
    def block_layers(self) -> list[tuple[int, int]]:
        """(layers, growth rate) of each block, defaults filled in."""
        return [(b.layers, b.growth_rate) for b in self.block_configs]

    @property
    def block_configs(self) -> list[BlockConfig]:
        """Each block's settings: what the block says, else the network-wide value."""
        out = []
        for block in self.blocks:
            if isinstance(block, int):
                out.append(BlockConfig(block, self.growth_rate, self.bottleneck_width, self.dropout, self.compression))
                continue
            given = block.model_fields_set
            out.append(
                BlockConfig(
                    layers=block.layers,
                    growth_rate=block.growth_rate or self.growth_rate,
                    # an explicit null switches the bottleneck off for this block; leaving it out inherits
                    bottleneck_width=block.bottleneck_width if "bottleneck_width" in given else self.bottleneck_width,
                    dropout=block.dropout if block.dropout is not None else self.dropout,
                    compression=block.compression if block.compression is not None else self.compression,
                )
            )
        return out

    @property
    def source(self) -> SourceMap:
        """Where each field was written; empty for a spec built in Python."""
        return self._source


KIND_NAMES: dict[str, tuple[str, ...]] = {"stem": STEM_KINDS, "activation": ACTIVATION_KINDS, "norm": NORM_KINDS}
"""The top-level keys that also take a kind's name (``norm: instance`` is ``norm: {kind: instance}``,
the before-validators of :class:`Spec`), with the names each takes."""

REQUIRED_UNLESS_EXTENDS = ("name", "growth_rate", "blocks")


def json_schema() -> dict[str, Any]:
    """The JSON Schema of the spec format, for editors and other tools.

    A spec that ``extends`` another may leave out the required keys (its parent provides them),
    so the schema requires them only when ``extends`` is absent.
    """
    schema = Spec.model_json_schema()
    schema.pop("required", None)
    schema["anyOf"] = [{"required": ["extends"]}, {"required": list(REQUIRED_UNLESS_EXTENDS)}]
    # `stem: cifar` is shorthand for `stem: {kind: cifar}`, and so for activation and norm (the
    # before-validators): say so to editors too.
    for key, kinds in KIND_NAMES.items():
        _take_kind_name(schema["properties"][key], kinds)
    # A norm or activation takes another kind's parameter only as null (the default), as the
    # validators have it: editors then flag `{kind: relu, negative_slope: 0.2}` too.
    for kinded, params_of in ((NormSpec, NORM_PARAMS), (ActivationSpec, ACTIVATION_PARAMS)):
        schema["$defs"][kinded.__name__]["allOf"] = _kind_rules(kinded, params_of)
    # A stem takes null for another kind's key (what a child writes to drop an inherited one).
    for model in STEM_MODELS:
        properties = schema["$defs"][model.__name__]["properties"]
        for key in sorted(STEM_KEYS - set(properties)):
            properties[key] = {
                "type": "null",
                "description": f"Another stem kind's key: null drops an inherited {key}.",
            }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://densenet-spec.dev/schema/v1.json",
        **schema,
    }


def _kind_rules(model: type[BaseModel], params_of: Mapping[str, tuple[str, ...]]) -> list[dict[str, Any]]:
    """JSON Schema ``if``/``then`` rules: under each kind, the parameters of other kinds are null."""
    kinds = model.model_fields["kind"].annotation.__args__  # type: ignore[union-attr]
    default = model.model_fields["kind"].default
    params = sorted({p for taken in params_of.values() for p in taken})
    rules = []
    for kind in kinds:
        chosen: dict[str, Any] = {"properties": {"kind": {"const": kind}}, "required": ["kind"]}
        if kind == default:  # the kind when none is written
            chosen = {"anyOf": [chosen, {"not": {"required": ["kind"]}}]}
        others = [p for p in params if p not in params_of.get(kind, ())]
        if others:
            rules.append({"if": chosen, "then": {"properties": {p: {"type": "null"} for p in others}}})
    return rules


def _take_kind_name(prop: dict[str, Any], kinds: tuple[str, ...]) -> None:
    """Let a property's JSON Schema take a bare kind name as well as its mapping(s)."""
    name = {"type": "string", "enum": list(kinds)}
    if "oneOf" in prop:
        prop["oneOf"] = [*prop["oneOf"], name]
    else:
        prop["oneOf"] = [{"$ref": prop.pop("$ref")}, name]
