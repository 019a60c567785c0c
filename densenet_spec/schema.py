"""The spec format (v1) as pydantic models.

The models are strict (``4.5`` layers is an error, not 4; ``"32"`` is not a number), reject
unknown keys and are immutable. Every field carries a description, so that
``densenet-spec schema`` emits a JSON Schema that editors use for completion and hover help.
Defaults that depend on other fields (the stem's width) are resolved by accessors, not stored,
so that a child spec that changes ``growth_rate`` still gets a stem of ``2 * growth_rate``.
"""

from __future__ import annotations

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

from .errors import Location

PositiveInt = Annotated[int, Field(ge=1)]

FieldPath = tuple[str | int, ...]


@dataclass(frozen=True)
class SourceMap:
    """Where each field of a spec was written, filled in by the loader.

    ``values`` locates a field's value (scalars) or its key (nested mappings and lists);
    ``keys`` locates the key itself, for errors about the key (unknown, duplicate).
    """

    values: dict[FieldPath, Location] = field(default_factory=dict)
    keys: dict[FieldPath, Location] = field(default_factory=dict)

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


def _size_tag(value: Any) -> str:
    return "pair" if isinstance(value, list | tuple) else "int"


Size = Annotated[
    Annotated[PositiveInt, Tag("int")]
    | Annotated[
        list[PositiveInt],
        Tag("pair"),
        Field(min_length=2, max_length=2),
    ],
    Discriminator(_size_tag),
]


class InputSpec(_Model):
    """The images the network takes."""

    channels: PositiveInt = Field(3, description="Channels of the input image (3 for RGB).")
    size: Size = Field(
        224,
        description="Input height and width in pixels: one integer for a square, or [height, width]. "
        "Costs (MACs) are counted at this size.",
    )

    @property
    def hw(self) -> tuple[int, int]:
        """The size as (height, width)."""
        if isinstance(self.size, int):
            return (self.size, self.size)
        return (self.size[0], self.size[1])


class ImagenetStem(_Model):
    """conv 7x7 stride 2, BN, ReLU, max-pool 3x3 stride 2: a quarter of the input size."""

    kind: Literal["imagenet"] = Field("imagenet", description="imagenet: conv7x7/2-BN-ReLU-maxpool3x3/2.")
    channels: PositiveInt | None = Field(
        None, description="Output channels of the stem convolution. Default: 2 * growth_rate."
    )


class CifarStem(_Model):
    """A single conv 3x3 stride 1; the first dense layer's BN follows it."""

    kind: Literal["cifar"] = Field(description="cifar: one conv3x3/1, full resolution.")
    channels: PositiveInt | None = Field(
        None, description="Output channels of the stem convolution. Default: 2 * growth_rate."
    )


def _stem_tag(value: Any) -> str | None:
    if isinstance(value, dict):
        kind = value.get("kind", "imagenet")
        return kind if isinstance(kind, str) else None
    if isinstance(value, BaseModel):
        return str(getattr(value, "kind", ""))
    return None


STEM_KINDS = ("imagenet", "cifar")

Stem = Annotated[
    Annotated[ImagenetStem, Tag("imagenet")] | Annotated[CifarStem, Tag("cifar")],
    Discriminator(
        _stem_tag,
        custom_error_type="stem_kind",
        custom_error_message="stem.kind must be one of 'imagenet', 'cifar'",
    ),
]


class BlockSpec(_Model):
    """A dense block written as a mapping, to give it its own growth rate."""

    layers: PositiveInt = Field(description="Number of dense layers in the block.")
    growth_rate: PositiveInt | None = Field(
        None, description="Feature maps each layer of this block adds. Default: the spec's growth_rate."
    )


def _block_tag(value: Any) -> str:
    return "mapping" if isinstance(value, dict | BlockSpec) else "int"


Block = Annotated[
    Annotated[PositiveInt, Tag("int")] | Annotated[BlockSpec, Tag("mapping")],
    Discriminator(_block_tag),
]


class Spec(_Model):
    """A DenseNet variant: what densenet-spec validates, compiles, builds and draws."""

    model_config = ConfigDict(
        title="densenet-spec v1",
        json_schema_extra={"description": "A DenseNet-family architecture (densenet-spec format v1)."},
    )

    name: str = Field(
        pattern=r"^[a-z0-9._-]+$",
        min_length=1,
        max_length=128,
        description="Identifier of the variant: lower-case letters, digits, '.', '_' and '-'.",
    )
    description: str = Field("", description="Free text: what the variant is and where it comes from.")
    extends: str | None = Field(
        None,
        description="A preset name, or a path relative to this file, whose keys this spec overrides "
        "(mappings merge key by key, lists replace).",
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
    compression: float = Field(
        0.5,
        gt=0,
        le=1,
        description="theta (DenseNet-C): a transition keeps floor(theta * m) of its m maps; 1.0 for none.",
    )
    dropout: float = Field(0.0, ge=0, lt=1, description="Dropout rate after each dense layer's 3x3 conv.")
    num_classes: PositiveInt = Field(1000, description="Outputs of the final linear layer.")

    _source: SourceMap = PrivateAttr(default_factory=SourceMap)

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

    @property
    def stem_channels(self) -> int:
        return self.stem.channels if self.stem.channels is not None else 2 * self.growth_rate

    @property
    def block_layers(self) -> list[tuple[int, int]]:
        """(layers, growth rate) of each block, defaults filled in."""
        out = []
        for block in self.blocks:
            if isinstance(block, int):
                out.append((block, self.growth_rate))
            else:
                out.append((block.layers, block.growth_rate or self.growth_rate))
        return out

    @property
    def source(self) -> SourceMap:
        """Where each field was written; empty for a spec built in Python."""
        return self._source


REQUIRED_UNLESS_EXTENDS = ("name", "growth_rate", "blocks")


def json_schema() -> dict[str, Any]:
    """The JSON Schema of the spec format, for editors and other tools.

    A spec that ``extends`` another may leave out the required keys (its parent provides them),
    so the schema requires them only when ``extends`` is absent.
    """
    schema = Spec.model_json_schema()
    schema.pop("required", None)
    schema["anyOf"] = [{"required": ["extends"]}, {"required": list(REQUIRED_UNLESS_EXTENDS)}]
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://densenet-spec.dev/schema/v1.json",
        **schema,
    }
