"""The loader: extends, merging, source locations, presets."""

from __future__ import annotations

from pathlib import Path

import pytest

from densenet_spec import SpecError, compile_spec, load_spec
from densenet_spec.loader import preset_names

from .conftest import PRESETS


def test_extends_a_preset_by_name(write_spec) -> None:  # type: ignore[no-untyped-def]
    spec = load_spec(write_spec("name: densenet121-k48\nextends: densenet121\ngrowth_rate: 48\n"))
    assert spec.name == "densenet121-k48"
    assert spec.growth_rate == 48
    assert spec.block_layers == [(6, 48), (12, 48), (24, 48), (16, 48)]
    assert spec.stem_channels == 64  # the parent's explicit stem width is kept
    assert spec.extends == "densenet121"


def test_mappings_merge_and_lists_replace(write_spec, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    write_spec(
        "name: base\ngrowth_rate: 12\nblocks: [4, 4, 4]\ninput: {channels: 1, size: 64}\nstem: {kind: cifar}\n",
        "base.yaml",
    )
    child = write_spec("name: child\nextends: base.yaml\ninput: {size: [48, 32]}\nblocks: [2]\n", "child.yaml")
    spec = load_spec(child)
    assert spec.input.channels == 1  # merged from the parent's mapping
    assert spec.input.hw == (48, 32)
    assert spec.block_layers == [(2, 12)]  # the list replaced, not appended
    assert spec.stem.kind == "cifar"


def test_extends_chain_of_files(write_spec) -> None:  # type: ignore[no-untyped-def]
    write_spec("name: a\nextends: densenet-bc-100-k12\nnum_classes: 100\n", "a.yaml")
    write_spec("name: b\nextends: a.yaml\ndropout: 0.2\n", "b.yaml")
    spec = load_spec(write_spec("name: c\nextends: ./b.yaml\ngrowth_rate: 24\n", "c.yaml"))
    assert (spec.num_classes, spec.dropout, spec.growth_rate, spec.stem.kind) == (100, 0.2, 24, "cifar")


def test_error_in_child_points_at_child_and_in_parent_at_parent(write_spec) -> None:  # type: ignore[no-untyped-def]
    write_spec("name: parent\ngrowth_rate: 12\nblocks: [4]\nnum_classes: 0\n", "parent.yaml")
    child = write_spec("name: child\nextends: parent.yaml\n\ndropout: 3\n", "child.yaml")
    with pytest.raises(SpecError) as info:
        load_spec(child)
    where = sorted((f"{Path(str(p.location)).name}", p.field) for p in info.value.problems)
    assert where == [("child.yaml:4:10", "dropout"), ("parent.yaml:4:14", "num_classes")]


def test_growth_rate_override_changes_default_stem(write_spec) -> None:  # type: ignore[no-untyped-def]
    write_spec("name: p\ngrowth_rate: 12\nblocks: [2, 2]\nstem: {kind: cifar}\n", "p.yaml")
    spec = load_spec(write_spec("name: c\nextends: p.yaml\ngrowth_rate: 40\n", "c.yaml"))
    assert spec.stem_channels == 80


def test_locations_point_at_values(write_spec) -> None:  # type: ignore[no-untyped-def]
    spec = load_spec(write_spec("name: x\ngrowth_rate: 12\nblocks:\n  - 3\n  - {layers: 2, growth_rate: 6}\n"))
    assert str(spec.source.locate(("blocks", 1, "growth_rate"))).endswith(":5:30")
    assert str(spec.source.locate(("blocks", 0))).endswith(":4:5")


def test_merge_keys_are_supported(write_spec) -> None:  # type: ignore[no-untyped-def]
    text = (
        "name: x\ngrowth_rate: 12\nblocks: [2]\ninput: &in {channels: 1}\nstem:\n  <<: {kind: cifar}\n  channels: 8\n"
    )
    spec = load_spec(write_spec(text))
    assert (spec.stem.kind, spec.stem_channels) == ("cifar", 8)


def test_preset_names_are_natural_order() -> None:
    names = preset_names()
    assert names.index("densenet-40-k12") < names.index("densenet-100-k12")
    assert len(PRESETS) == 11


def test_building_a_spec_with_extends_in_python_is_refused() -> None:
    from pydantic import ValidationError

    from densenet_spec import Spec

    with pytest.raises(ValidationError, match="load_spec"):
        Spec.model_validate({"name": "x", "growth_rate": 1, "blocks": [1], "extends": "densenet121"})


def test_spec_built_in_python_compiles() -> None:
    from densenet_spec import Spec

    spec = Spec(name="tiny", growth_rate=4, blocks=[2, 2], input={"size": 32}, num_classes=3)  # type: ignore[arg-type]
    ir = compile_spec(spec)
    assert ir.info.source == "<python>"
    assert ir.output.out_channels == 3
