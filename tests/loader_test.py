"""The loader: extends, merging, source locations, presets."""

from __future__ import annotations

import os
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
    write_spec("name: parent\ngrowth_rate: 12\nblocks: [4]\nnum_classes: -1\n", "parent.yaml")
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
    assert len(PRESETS) == 15


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


# ----------------------------------------------------------------------------- robustness (issue 12)


def test_merge_key_override_is_not_a_duplicate(write_spec) -> None:  # type: ignore[no-untyped-def]
    text = "name: x\ngrowth_rate: 12\nblocks: [2]\ninput: {<<: {channels: 1, size: 64}, size: 32}\n"
    spec = load_spec(write_spec(text))
    assert (spec.input.channels, spec.input.size) == (1, 32)


def test_merge_key_precedence_follows_yaml(write_spec) -> None:  # type: ignore[no-untyped-def]
    # Own keys win wherever they are written; of several merged mappings the earlier wins.
    text = "name: x\ngrowth_rate: 12\nblocks: [2]\ninput:\n  size: 64\n  <<: [{channels: 1, size: 40}, {channels: 2}]\n"
    spec = load_spec(write_spec(text))
    assert (spec.input.channels, spec.input.size) == (1, 64)


def test_merged_mapping_values_are_located_at_the_anchor(write_spec) -> None:  # type: ignore[no-untyped-def]
    text = "name: x\ngrowth_rate: 12\nblocks: [2]\nstem: {<<: {kind: cifar, channels: 0}}\n"
    with pytest.raises(SpecError) as info:
        load_spec(write_spec(text))
    (problem,) = info.value.problems
    assert (problem.field, problem.location.line, problem.location.column) == ("stem.channels", 4, 36)  # type: ignore[union-attr]


def test_own_duplicates_are_still_refused_next_to_a_merge(write_spec) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SpecError, match="duplicate key 'size'"):
        load_spec(write_spec("name: x\ngrowth_rate: 12\nblocks: [2]\ninput: {<<: {channels: 1}, size: 32, size: 16}\n"))


def test_stem_shorthand(write_spec) -> None:  # type: ignore[no-untyped-def]
    cifar = load_spec(write_spec("name: x\ngrowth_rate: 12\nblocks: [2]\ninput: {size: 32}\nstem: cifar\n"))
    imagenet = load_spec(write_spec("name: y\ngrowth_rate: 12\nblocks: [2]\nstem: imagenet\n", "y.yaml"))
    assert (cifar.stem.kind, cifar.stem_channels, imagenet.stem.kind) == ("cifar", 24, "imagenet")


def _timed_refusal(path: Path, match: str, seconds: float = 2.0) -> SpecError:
    import time

    start = time.perf_counter()
    with pytest.raises(SpecError, match=match) as info:
        load_spec(path)
    assert time.perf_counter() - start < seconds
    return info.value


@pytest.mark.parametrize(
    ("text", "where", "says"),
    [
        ("blocks: " + "[" * 5000 + "]" * 5000, (3, 41), "invalid YAML: nested more than 32 levels"),
        ("blocks: " + "[" * 40 + "]" * 40, (3, 41), "nested more than 32 levels deep here"),
        (  # brackets in a comment and in a string are not nesting
            "# " + "[" * 50 + "\ndescription: '" + "[" * 50 + "'\nblocks: " + "[" * 5000 + "]" * 5000,
            (5, 41),
            "invalid YAML: nested more than 32 levels",
        ),
    ],
)
def test_deep_nesting_is_placed_where_it_gets_too_deep(
    tmp_path: Path, text: str, where: tuple[int, int], says: str
) -> None:
    path = tmp_path / "deep.yaml"
    path.write_text(f"name: x\ngrowth_rate: 4\n{text}\n")
    with pytest.raises(SpecError) as info:
        load_spec(path)
    (problem,) = info.value.problems
    assert problem.location is not None and (problem.location.line, problem.location.column) == where
    assert problem.message.startswith(says)


def test_nested_merge_key_bomb_is_refused_fast(tmp_path: Path) -> None:
    # Each level merges the previous one 9 times: 9**8 values if expanded (PyYAML's flattening takes minutes).
    lines = ["l0: &l0 {" + ", ".join(f"k{i}: {i}" for i in range(9)) + "}"]
    lines += [f"l{n}: &l{n} {{<<: [{', '.join([f'*l{n - 1}'] * 9)}], z{n}: 1}}" for n in range(1, 9)]
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join([*lines, "name: x", "growth_rate: 12", "blocks: [2]"]) + "\n")
    error = _timed_refusal(path, "holds more than 10,000 values", seconds=1.0)
    assert len(error.problems) == 1


def test_extends_chain_of_1100_files_names_the_limit(tmp_path: Path) -> None:
    from densenet_spec.loader import MAX_EXTENDS

    for i in range(1100):
        body = f"name: s{i}\nextends: s{i + 1}.yaml\n" if i < 1099 else "name: last\ngrowth_rate: 12\nblocks: [2]\n"
        (tmp_path / f"s{i}.yaml").write_text(body)
    error = _timed_refusal(tmp_path / "s0.yaml", f"extends chain is longer than {MAX_EXTENDS} files")
    assert error.problems[0].field == "extends"
    assert str(error.problems[0].location).endswith(f"s{MAX_EXTENDS - 1}.yaml:2:10")
    assert load_spec(tmp_path / f"s{1100 - MAX_EXTENDS}.yaml").name == f"s{1100 - MAX_EXTENDS}"


def test_integer_of_4400_digits_is_refused_with_its_place(write_spec) -> None:  # type: ignore[no-untyped-def]
    error = _timed_refusal(write_spec("name: x\ngrowth_rate: " + "9" * 4400 + "\nblocks: [2]\n"), "4,400 digits")
    assert (error.problems[0].field, str(error.problems[0].location)[-5:]) == ("growth_rate", ":2:14")


def test_deep_nesting_is_refused_without_recursion_error(write_spec) -> None:  # type: ignore[no-untyped-def]
    _timed_refusal(write_spec("name: x\ngrowth_rate: 12\nblocks: " + "[" * 5000 + "]" * 5000 + "\n"), "nested|levels")
    _timed_refusal(write_spec("name: x\ngrowth_rate: 12\nblocks: " + "[" * 40 + "]" * 40 + "\n", "b.yaml"), "32 levels")


def test_spec_argument_that_is_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.yaml"
    os.mkfifo(fifo)
    _timed_refusal(fifo, "not a regular file")


def test_extends_name_too_long_is_a_located_problem(write_spec) -> None:  # type: ignore[no-untyped-def]
    error = _timed_refusal(write_spec("name: x\nextends: " + "a/" * 3000 + "x.yaml\n"), "extends|no spec file")
    assert error.problems[0].location.line == 2  # type: ignore[union-attr]


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads any file")
def test_unreadable_spec_names_the_file(write_spec) -> None:  # type: ignore[no-untyped-def]
    path = write_spec("name: x\ngrowth_rate: 12\nblocks: [2]\n")
    path.chmod(0)
    error = _timed_refusal(path, "cannot read the file: Permission denied")
    assert error.problems[0].location.file.endswith("spec.yaml")  # type: ignore[union-attr]


def test_scalar_constructors_leave_no_cache_behind(write_spec) -> None:  # type: ignore[no-untyped-def]
    from densenet_spec import yaml_nodes

    for i in range(3):
        load_spec(write_spec(f"name: x{i}\ngrowth_rate: 12\nblocks: [2]\n"))
    assert not yaml_nodes._CONSTRUCTOR.constructed_objects


def test_a_parents_kind_name_merges_with_a_childs_mapping(tmp_path: Path) -> None:
    """``norm: instance`` is ``norm: {kind: instance}``: a child's ``norm: {eps: ...}`` keeps the kind."""
    parent = (
        "name: p\ngrowth_rate: 4\nblocks: [1, 1]\ninput: {size: 32}\nstem: cifar\nnorm: instance\nactivation: elu\n"
    )
    (tmp_path / "parent.yaml").write_text(parent)
    child = tmp_path / "child.yaml"
    child.write_text(
        "name: c\nextends: parent.yaml\nnorm: {eps: 0.001}\nstem: {channels: 24}\nactivation: {alpha: 0.5}\n"
    )
    spec = load_spec(child)
    assert (spec.norm.kind, spec.norm.eps) == ("instance", 0.001)
    assert (spec.stem.kind, spec.stem.channels) == ("cifar", 24)
    assert (spec.activation.kind, spec.activation.alpha) == ("elu", 0.5)
    location = spec.source.locate(("norm", "kind"))
    assert location is not None and (location.file, location.line) == (str(tmp_path / "parent.yaml"), 6)
