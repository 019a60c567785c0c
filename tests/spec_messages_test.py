"""Messages for the mistakes a new user makes: each names FILE:LINE:COL, the field and the fix.

Found in a trial with new users: non-finite floats, YAML 1.1's surprises (``1e-5`` as text,
``yes`` as a boolean, several documents), pydantic's own wording, ranges that were not the
field's, problems located at 1:1 or without a field, names that make odd file names, norm
parameters with no effect, and messages about the spec argument itself.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Annotated, Any

import pytest
import yaml
from pydantic import BaseModel, TypeAdapter, ValidationError
from typer.testing import CliRunner

from densenet_spec import SpecError, compile_spec, load_spec
from densenet_spec.cli import app
from densenet_spec.loader import preset_names
from densenet_spec.schema import (
    NAME_PATTERN,
    RANGES,
    ActivationSpec,
    BlockSpec,
    CifarStem,
    DeepStem,
    HeadSpec,
    ImagenetStem,
    InputSpec,
    NormSpec,
    Spec,
)
from densenet_spec.yaml_nodes import SpecLoader

MODELS: tuple[type[BaseModel], ...] = (
    Spec,
    InputSpec,
    ImagenetStem,
    CifarStem,
    DeepStem,
    ActivationSpec,
    NormSpec,
    HeadSpec,
    BlockSpec,
)
BASE = "name: x\ngrowth_rate: 4\nblocks: [2]\n"


def spec_text(fields: str) -> str:
    """BASE with ``fields`` (YAML lines) added, each replacing BASE's line of the same key."""
    keys = {line.split(":")[0] for line in fields.splitlines()}
    kept = [line for line in BASE.splitlines() if line.split(":")[0] not in keys]
    return "".join(f"{line}\n" for line in (*kept, *fields.splitlines()))


@pytest.fixture
def problems(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """Every problem of a spec text (loaded and compiled) as the CLI prints it, the file as spec.yaml."""
    monkeypatch.chdir(tmp_path)

    def run(text: str) -> list[str]:
        (tmp_path / "spec.yaml").write_text(text)
        try:
            compile_spec(load_spec("spec.yaml"))
        except SpecError as exc:
            return [str(p) for p in exc.problems]
        return []

    return run


def numeric_fields() -> list[tuple[type[BaseModel], str, Any]]:
    """(model, field, annotation) for every int or float field of the schema."""
    return [
        (model, name, info.annotation)
        for model in MODELS
        for name, info in model.model_fields.items()
        if re.search(r"\b(int|float)\b", str(info.annotation)) and "bool" not in str(info.annotation)
    ]


# ----------------------------------------------------------------------------- 1. finite floats


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        (
            "activation: {kind: leaky_relu, negative_slope: .nan}",
            "spec.yaml:4:48: activation.negative_slope: nan is out of range: must be finite, e.g. 0.01 or 0.2",
        ),
        ("activation: {kind: leaky_relu, negative_slope: .inf}", "activation.negative_slope: inf is out of range"),
        ("activation: {kind: leaky_relu, negative_slope: -.inf}", "activation.negative_slope: -inf is out of range"),
        (
            "activation: {kind: elu, alpha: .inf}",
            "spec.yaml:4:32: activation.alpha: inf is out of range: must be finite and > 0, e.g. 1.0",
        ),
        ("activation: {kind: elu, alpha: .nan}", "activation.alpha: nan is out of range: must be finite and > 0"),
        ("norm: {eps: .nan}", "norm.eps: nan is out of range: must be 0 < eps < 1"),
        ("norm: {momentum: .inf}", "norm.momentum: inf is out of range: must be 0 < momentum <= 1"),
        ("dropout: .nan", "dropout: nan is out of range: must be 0 <= dropout < 1"),
        ("head: {dropout: .nan}", "head.dropout: nan is out of range: must be 0 <= dropout < 1"),
        ("compression: .inf", "compression: inf is out of range: must be 0 < compression <= 1"),
    ],
)
def test_nan_and_infinity_are_refused(problems, fields: str, expected: str) -> None:  # type: ignore[no-untyped-def]
    assert expected in problems(spec_text(fields))[0]


@pytest.mark.parametrize(("model", "name"), [(m, n) for m, n, a in numeric_fields() if "float" in str(a)])
def test_every_float_field_is_finite(model: type[BaseModel], name: str) -> None:
    info = model.model_fields[name]
    annotated = Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation  # type: ignore[valid-type]
    adapter: TypeAdapter[Any] = TypeAdapter(annotated)
    for value in (math.nan, math.inf, -math.inf):
        with pytest.raises(ValidationError, match="finite"):
            adapter.validate_python(value, strict=True)


# ----------------------------------------------------------------------------- 2. YAML 1.2 floats


@pytest.mark.parametrize(
    ("text", "value"),
    [("1e-5", 1e-5), ("5e-1", 0.5), ("1E3", 1000.0), ("-2.5e+3", -2500.0), ("1.0e5", 1e5), (".5e1", 5.0)],
)
def test_exponent_floats_are_floats(text: str, value: float) -> None:
    assert yaml.load(f"v: {text}", Loader=SpecLoader) == {"v": value}  # SpecLoader is a SafeLoader


def test_yaml_safe_loader_itself_is_unchanged() -> None:
    assert yaml.safe_load("v: 1e-5") == {"v": "1e-5"}


def test_eps_written_as_pytorch_users_do(problems) -> None:  # type: ignore[no-untyped-def]
    text = BASE + "norm: {eps: 1e-5, momentum: 1e-1}\nactivation: {kind: leaky_relu, negative_slope: 2e-1}\n"
    assert problems(text) == []
    spec = load_spec("spec.yaml")
    assert (spec.norm.eps, spec.norm.momentum, spec.activation.negative_slope) == (1e-5, 0.1, 0.2)


@pytest.mark.parametrize("text", ["name: 1e5\ndescription: 2e3", "name: 1e-5\ndescription: '2e3'"])
def test_text_fields_keep_what_yaml_1_1_read_as_text(problems, text: str) -> None:  # type: ignore[no-untyped-def]
    assert problems(text + "\ngrowth_rate: 4\nblocks: [2]\n") == []
    spec = load_spec("spec.yaml")
    assert isinstance(spec.name, str) and spec.name.startswith("1e") and spec.description == "2e3"


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        (
            "num_classes: 1e3",
            "num_classes: must be an integer >= 0 (0: no classifier), not 1000.0 (write 1000, without a decimal point",
        ),
        ("blocks: [2, 3e0]", "blocks[1]: must be an integer >= 1, not 3.0 (write 3,"),
        ("growth_rate: 1e400", "growth_rate: must be an integer >= 1, not inf"),
    ],
)
def test_integer_fields_given_exponent_floats(problems, fields: str, expected: str) -> None:  # type: ignore[no-untyped-def]
    assert expected in problems(spec_text(fields))[0]


# ----------------------------------------------------------------------------- 3. each field's range


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        (
            "activation: {kind: leaky_relu, negative_slope: abc}",
            "must be a number (finite, e.g. 0.01 or 0.2), not 'abc'",
        ),
        ("activation: {kind: elu, alpha: -1}", "-1 is out of range: must be finite and > 0, e.g. 1.0"),
        ("num_classes: 1e30", "num_classes: must be an integer >= 0 (0: no classifier), not 1e+30"),
        ("num_classes: -1", "num_classes: -1 is out of range: must be an integer >= 0 (0: no classifier)"),
        ("num_classes: '10'", "must be an integer >= 0 (0: no classifier), not '10' (a number in quotes is text"),
        ("compression: '0.5'", "must be a number (0 < compression <= 1), not '0.5' (a number in quotes is text"),
        ("norm: {kind: group, groups: 0}", "norm.groups: 0 is out of range: must be an integer >= 1"),
    ],
)
def test_ranges_are_the_fields_own(problems, fields: str, expected: str) -> None:  # type: ignore[no-untyped-def]
    assert expected in problems(spec_text(fields))[0]


@pytest.mark.parametrize(("model", "name"), [(m, n) for m, n, _ in numeric_fields()])
def test_every_numeric_field_states_its_range(model: type[BaseModel], name: str) -> None:
    assert name in RANGES, f"{model.__name__}.{name}: add its range to schema.RANGES"


# ----------------------------------------------------------------------------- 4. no pydantic wording


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        (
            "stem: {kind: deep, mid_channels: [4]}",
            "spec.yaml:4:34: stem.mid_channels: needs exactly 2 widths (one per 3x3 conv before the last), "
            "e.g. [32, 32]; got 1",
        ),
        ("stem: {kind: deep, mid_channels: [4, 4, 4]}", "needs exactly 2 widths (one per 3x3 conv before the last)"),
        ("norm: {affine: 'true'}", "norm.affine: must be true or false (unquoted), not the string 'true'"),
        ("norm: {affine: 1}", "norm.affine: must be true or false, not 1"),
        ("blocks: {a: 1}", "blocks: must be a list, not a mapping"),
        ("input: [1]", "input: must be a mapping of keys, not a list"),
    ],
)
def test_project_wording(problems, fields: str, expected: str) -> None:  # type: ignore[no-untyped-def]
    assert expected in problems(spec_text(fields))[0]


@pytest.mark.parametrize(
    ("name", "expected"), [("a" * 129, "is 129 characters long; a name has at most 128"), ("''", "is empty")]
)
def test_name_length(problems, name: str, expected: str) -> None:  # type: ignore[no-untyped-def]
    assert expected in problems(f"name: {name}\ngrowth_rate: 4\nblocks: [2]\n")[0]


PLACES = (
    "name: {v}", "description: {v}", "growth_rate: {v}", "blocks: {v}", "blocks: [{v}]", "blocks: [{{layers: {v}}}]",
    "blocks: [{{layers: 1, growth_rate: {v}}}, 1]", "blocks: [{{layers: 1, compression: {v}}}, 1]",
    "blocks: [{{layers: 1, dropout: {v}}}]", "blocks: [{{layers: 1, bottleneck_width: {v}}}]",
    "bottleneck_width: {v}", "compression: {v}", "dropout: {v}", "num_classes: {v}", "anti_alias: {v}",
    "input: {v}", "input: {{channels: {v}}}", "input: {{size: {v}}}", "input: {{size: [{v}]}}", "stem: {v}",
    "stem: {{kind: {v}}}", "stem: {{channels: {v}}}", "stem: {{kind: deep, mid_channels: {v}}}",
    "stem: {{kind: deep, mid_channels: [{v}, 2]}}", "activation: {v}", "activation: {{kind: {v}}}",
    "activation: {{kind: leaky_relu, negative_slope: {v}}}", "activation: {{kind: elu, alpha: {v}}}",
    "activation: {{kind: gelu, approximate: {v}}}", "norm: {v}", "norm: {{kind: {v}}}",
    "norm: {{kind: group, groups: {v}}}", "norm: {{eps: {v}}}", "norm: {{momentum: {v}}}", "norm: {{affine: {v}}}",
    "head: {v}", "head: {{pool: {v}}}", "head: {{dropout: {v}}}",
)  # fmt: skip
WRONG = ("'x'", "[1, 2, 3, 4]", "[]", "{a: 1}", "yes", "null", "-1", "1.5", ".nan", "2024-01-01", "1e3", "''")


@pytest.mark.parametrize("place", PLACES)
def test_no_raw_pydantic_wording_anywhere(problems, place: str) -> None:  # type: ignore[no-untyped-def]
    for wrong in WRONG:
        fields = place.format(v=wrong)
        for problem in problems(spec_text(fields)):
            assert not re.search(r"[Ss]hould|\(got |valid \w+ \(|Input ", problem), f"{fields!r}: {problem}"
            assert re.match(r"spec\.yaml:\d+:\d+: ", problem), f"{fields!r}: {problem}"


# ----------------------------------------------------------------------------- 5. YAML 1.1 surprises


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        (
            "name: yes",
            'name: must be a string, not true (YAML reads unquoted yes/no/on/off/true/false as booleans: write "yes")',
        ),
        (
            "name: off",
            'name: must be a string, not false (YAML reads unquoted yes/no/on/off/true/false as booleans: write "off")',
        ),
        (
            "description: 2024-01-01",
            'description: must be a string, not 2024-01-01 (YAML reads an unquoted date as a date: write "2024-01-01")',
        ),
        ("name: 121", 'name: must be a string, not 121 (YAML reads an unquoted number as a number: write "121")'),
        ("name: 0x1f", 'name: must be a string, not 31 (YAML reads an unquoted number as a number: write "0x1f")'),
    ],
)
def test_unquoted_values_of_text_fields_hint_to_quote(problems, fields: str, expected: str) -> None:  # type: ignore[no-untyped-def]
    assert problems(spec_text(fields))[0].endswith(expected)


def test_several_documents_say_one_spec_a_file(problems) -> None:  # type: ignore[no-untyped-def]
    (problem,) = problems(BASE + "---\nname: y\n")
    assert problem.startswith("spec.yaml:4:1: invalid YAML: a second YAML document starts here ('---'): ")
    assert "a spec file holds one document" in problem
    assert problems("---\n" + BASE) == []  # one document with its start marker is fine


# ----------------------------------------------------------------------------- 6. locations and blame


def test_compression_of_the_last_block_is_a_warning_at_its_key(tmp_path: Path) -> None:
    # design.md writes a per-block override with a compression; on the last block it does nothing
    spec = tmp_path / "spec.yaml"
    spec.write_text("name: x\ngrowth_rate: 4\nblocks: [2, {layers: 3, compression: 0.75}]\n")
    expected = (
        f"{spec}:3:38: blocks[1].compression: warning: the last block has no transition after it, so nothing "
        "uses its compression; remove it"
    )
    lenient = CliRunner().invoke(app, ["validate", str(spec)])
    assert lenient.exit_code == 0 and lenient.stderr.strip() == expected
    strict = CliRunner().invoke(app, ["validate", "--strict", str(spec)])
    assert strict.exit_code == 1 and strict.stderr.strip() == expected.replace("warning: ", "")


@pytest.mark.parametrize(
    ("fields", "where", "usual"),
    [
        ("growth_rate: 1000000000000000000000000000000\nblocks: [2]", "spec.yaml:2:14: growth_rate: ", "32"),
        ("growth_rate: 4\nblocks: [2]\nnum_classes: 100000000000", "spec.yaml:4:14: num_classes: ", "1000"),
        ("growth_rate: 4\nblocks: [2]\ninput: {channels: 100000000000}", "spec.yaml:4:19: input.channels: ", "3"),
        ("growth_rate: 4\nblocks: [2]\nstem: {channels: 10000000}", "spec.yaml:4:18: stem.channels: ", "64"),
        ("growth_rate: 4\nblocks: [2]\nbottleneck_width: 10000000000", "spec.yaml:4:19: bottleneck_width: ", "4"),
        (
            "growth_rate: 4\nblocks: [2, {layers: 2, growth_rate: 10000000}]",
            "spec.yaml:3:38: blocks[1].growth_rate: ",
            "32",
        ),
        (
            "growth_rate: 4\nblocks: [2]\nstem: {kind: deep, mid_channels: [8, 100000000]}",
            "spec.yaml:4:34: stem.mid_channels: ",
            "32",
        ),
    ],
)
def test_too_many_parameters_names_the_field(problems, fields: str, where: str, usual: str) -> None:  # type: ignore[no-untyped-def]
    (problem,) = problems(f"name: x\n{fields}\n")
    assert problem.startswith(where), problem
    assert problem.endswith(
        f"parameters is too many to build (at most 10,000,000,000), most of them because of this value; "
        f"lower it (e.g. {usual})"
    )


def test_too_many_parameters_without_one_cause_says_what_to_lower(problems) -> None:  # type: ignore[no-untyped-def]
    # Every width at its usual value: the size comes from 90 blocks that never compress.
    blocks = ", ".join(["100"] * 90)
    (problem,) = problems(f"name: x\ngrowth_rate: 32\ncompression: 1.0\nblocks: [{blocks}]\n")
    assert re.fullmatch(
        r"spec\.yaml:1:1: [0-9,]+ parameters is too many to build \(at most 10,000,000,000\); "
        r"lower growth_rate, the widths or the number of layers",
        problem,
    ), problem


def test_thousands_of_transitions_blame_the_blocks_not_the_input(problems) -> None:  # type: ignore[no-untyped-def]
    import time

    blocks = ", ".join(["1"] * 5000)
    start = time.perf_counter()
    (problem,) = problems(f"name: x\ngrowth_rate: 1\ninput: {{size: 32}}\nstem: cifar\nblocks: [{blocks}]\n")
    assert time.perf_counter() - start < 2.0
    assert problem == (
        "spec.yaml:5:9: blocks: 5,000 blocks make 4,999 transitions, each halving the feature maps: no practical "
        "input size works (the smallest is over 1,000,000 pixels a side); use fewer blocks; 32x32 allows at most "
        "6 blocks"
    )


def test_a_practical_smallest_input_is_still_named(problems) -> None:  # type: ignore[no-untyped-def]
    (problem,) = problems("name: x\ngrowth_rate: 4\ninput: {size: 32}\nstem: cifar\nblocks: [1, 1, 1, 1, 1, 1, 1]\n")
    assert problem == (
        "spec.yaml:3:15: input.size: 32x32 is too small: the feature maps shrink to nothing at features.transition6; "
        "the smallest input that works is 64x64"
    )


# ----------------------------------------------------------------------------- 7. names


@pytest.mark.parametrize("name", [".", "..", ".hidden", "'-'", "-x", "_x", "'.onnx'"])
def test_names_start_with_a_letter_or_digit(problems, name: str) -> None:  # type: ignore[no-untyped-def]
    (problem,) = problems(f"name: {name}\ngrowth_rate: 4\nblocks: [2]\n")
    assert problem.endswith(
        "is not a valid name: use lower-case letters, digits, '.', '_' and '-', starting with a letter or digit"
    )


@pytest.mark.parametrize("name", ["a", "0", "a.b-c_d", "densenet121-k48", "3d.v2"])
def test_ordinary_names_pass(problems, name: str) -> None:  # type: ignore[no-untyped-def]
    assert problems(f"name: '{name}'\ngrowth_rate: 4\nblocks: [2]\n") == []


def test_every_preset_name_fits_the_pattern() -> None:
    for name in preset_names():
        assert re.fullmatch(NAME_PATTERN, name) and re.fullmatch(NAME_PATTERN, load_spec(name).name), name


# ----------------------------------------------------------------------------- 8. norm parameters


@pytest.mark.parametrize(
    ("norm", "expected"),
    [
        (
            "{kind: none, eps: 0.1}",
            "spec.yaml:4:25: norm.eps: eps applies to batch, group and instance norm only, not none; remove it",
        ),
        ("{kind: none, affine: true}", "norm.affine: affine applies to batch, group and instance norm only, not none"),
        ("{kind: none, momentum: 0.5}", "norm.momentum: momentum applies to batch, group and instance norm only"),
        ("{kind: batch, groups: 4}", "norm.groups: groups applies to group norm only, not batch; remove it"),
        ("{kind: instance, groups: 4}", "norm.groups: groups applies to group norm only, not instance; remove it"),
    ],
)
def test_norm_parameters_the_kind_does_not_use_are_refused(problems, norm: str, expected: str) -> None:  # type: ignore[no-untyped-def]
    assert expected in problems(BASE + f"norm: {norm}\n")[0]


@pytest.mark.parametrize(
    "norm",
    [
        "{kind: batch, eps: 0.001, momentum: 0.01, affine: false}",
        "{kind: group, groups: 2, eps: 0.001, affine: false}",
        "{kind: group, groups: 2, eps: 1.0e-5, momentum: 0.1, affine: true}",  # as design.md writes it
        "{kind: instance, eps: 0.001, momentum: 0.5, affine: true}",
        "{kind: none}",
        "{kind: batch, groups: null, affine: null}",
    ],
)
def test_norm_parameters_the_kind_uses_are_accepted(problems, norm: str) -> None:  # type: ignore[no-untyped-def]
    assert problems(BASE + f"norm: {norm}\n") == []


def test_inherited_parameter_of_another_kind_points_at_the_parent(problems, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "base.yaml").write_text(BASE + "norm: {kind: group, groups: 4}\n")
    (problem,) = problems("name: y\nextends: base.yaml\nnorm: {kind: batch}\n")
    assert problem.startswith("base.yaml:4:29: norm.groups: groups applies to group norm only, not batch")
    assert problem.endswith("(inherited by spec.yaml: override it there, or set it to null for its default)")


@pytest.mark.parametrize(
    ("parent", "child", "advice"),
    [
        (
            "head: {pool: avg, drop: 0.1}\n",
            "",
            "(inherited by spec.yaml, which cannot remove a key: fix it in this file)",
        ),
        ("stem: cifar\nanti_alias: stem\n", "", "(inherited by spec.yaml: override it there)"),
    ],
)
def test_inherited_problems_offer_null_only_where_it_works(  # type: ignore[no-untyped-def]
    problems, tmp_path: Path, parent: str, child: str, advice: str
) -> None:
    (tmp_path / "base.yaml").write_text(BASE + parent)
    (problem,) = problems("name: y\nextends: base.yaml\n" + child)
    assert problem.startswith("base.yaml:") and problem.endswith(advice)


@pytest.mark.parametrize(
    ("block", "advice"),
    [
        ("{layers: 1, bottlenek: 2}", "(inherited by spec.yaml, which cannot remove a key: fix it in this file)"),
        ("{layers: 1, dropout: 2}", "(inherited by spec.yaml: override it there)"),
    ],
)
def test_inherited_problems_in_a_list_offer_no_null(problems, tmp_path: Path, block: str, advice: str) -> None:  # type: ignore[no-untyped-def]
    """A child replaces a list whole: it cannot null one entry's key, whatever null would do."""
    (tmp_path / "base.yaml").write_text(f"name: x\ngrowth_rate: 4\nblocks: [1, {block}]\n")
    (problem,) = problems("name: y\nextends: base.yaml\n")
    assert problem.startswith("base.yaml:3:") and problem.endswith(advice)


def test_null_for_a_key_no_stem_kind_has_is_still_unknown(problems) -> None:  # type: ignore[no-untyped-def]
    (problem,) = problems(BASE + "stem: {kind: imagenet, chanels: null}\n")
    assert "stem.chanels: unknown key 'chanels'" in problem


def test_stem_blur_without_a_stem_pool_is_refused(problems) -> None:  # type: ignore[no-untyped-def]
    (problem,) = problems(BASE + "stem: cifar\nanti_alias: stem\n")
    assert problem.startswith(
        "spec.yaml:5:13: anti_alias: 'stem' blurs the stem's max pool, and the cifar stem has none"
    )
    assert problems(BASE + "stem: cifar\nanti_alias: all\n") == []


def test_inherited_key_of_another_stem_kind_is_dropped_as_the_message_says(problems, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "base.yaml").write_text(BASE + "stem: {kind: deep, mid_channels: [8, 8], channels: 16}\n")
    (problem,) = problems("name: y\nextends: base.yaml\nstem: {kind: cifar}\n")
    assert problem.startswith("base.yaml:4:")
    assert "stem.mid_channels: mid_channels applies to deep stems only, not cifar" in problem
    assert problem.endswith("(inherited by spec.yaml: set it to null there to drop it)")
    assert problems("name: y\nextends: base.yaml\nstem: {kind: cifar, mid_channels: null}\n") == []


# ----------------------------------------------------------------------------- 9. the spec argument, extends


def test_extends_naming_a_folder_says_it_is_not_a_file(problems, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "dir.yaml").mkdir()
    assert problems("name: y\nextends: dir.yaml\n") == [
        "spec.yaml:2:10: extends: 'dir.yaml' is not a regular file (a folder, a FIFO or a device?)"
    ]


@pytest.mark.parametrize(("content", "says"), [(b"", "the file is empty"), (b"\xff\xfe\x00", "not UTF-8 text")])
def test_a_broken_parent_names_the_spec_that_extends_it(  # type: ignore[no-untyped-def]
    problems, tmp_path: Path, content: bytes, says: str
) -> None:
    (tmp_path / "parent.yaml").write_bytes(content)
    (problem,) = problems("name: y\nextends: parent.yaml\n")
    assert problem.startswith("parent.yaml: " + says) and problem.endswith(" (extended by spec.yaml)")


def test_missing_file_named_like_a_preset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SpecError) as info:
        load_spec("densenet121.yaml")
    assert str(info.value) == (
        "densenet121.yaml: no such file or preset; the preset is 'densenet121', without .yaml "
        "(`densenet-spec presets` lists the presets)"
    )
    with pytest.raises(SpecError) as info:
        load_spec("densnet121")
    assert str(info.value) == (
        "densnet121: no such file or preset; did you mean 'densenet121'? (`densenet-spec presets` lists the presets)"
    )


def test_empty_path() -> None:
    with pytest.raises(SpecError) as info:
        load_spec("")
    assert str(info.value) == "an empty path: give a spec file (.yaml) or a preset name"


@pytest.mark.parametrize("target", ["/etc/passwd", "/dev/zero", "sub/", "../base"])
def test_extends_paths_must_be_spec_files(problems, target: str) -> None:  # type: ignore[no-untyped-def]
    (problem,) = problems(f"name: x\nextends: {target}\n")
    assert problem == (
        f"spec.yaml:2:10: extends: '{target}' is not a spec file: a path in extends must end in .yaml or .yml "
        "(or name a preset: `densenet-spec presets` lists them)"
    )


def test_extends_a_yml_file(problems, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "base.yml").write_text(BASE)
    assert problems("name: y\nextends: sub/base.yml\ngrowth_rate: 8\n") == []


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("activation: swish", "not 'swish'; 'swish' is called 'silu' here"),
        ("activation: {kind: hard-swish}", "not 'hard-swish'; 'hard-swish' is called 'hardswish' here"),
        ("norm: BatchNorm", "not 'BatchNorm'; 'BatchNorm' is called 'batch' here"),
        ("norm: BatchNorm2d", "not 'BatchNorm2d'; 'BatchNorm2d' is called 'batch' here"),
        ("extends: densenet121.yaml", "the preset is written without .yaml: extends: densenet121"),
        ("activation: sigmoid", "not 'sigmoid'"),  # no synonym, no close match: the list alone
    ],
)
def test_other_libraries_names_for_a_choice_name_ours(problems, line: str, expected: str) -> None:  # type: ignore[no-untyped-def]
    (problem,) = problems(BASE + line + "\n")
    assert problem.endswith(expected)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("010", "growth_rate: 010 reads as 8 (YAML 1.1 reads a leading 0 as octal)"),
        ("1:30", "growth_rate: 1:30 reads as 90 (YAML 1.1 reads n:m as base 60)"),
    ],
)
def test_yaml_1_1_numbers_that_change_their_value_are_refused(problems, value: str, expected: str) -> None:  # type: ignore[no-untyped-def]
    (problem,) = problems(f"name: x\ngrowth_rate: {value}\nblocks: [2]\n")
    assert problem == f"spec.yaml:2:14: {expected}; write the number you mean without it"


@pytest.mark.parametrize(("value", "width"), [("0x10", 16), ("1_000", 1000), ("10", 10)])
def test_yaml_numbers_that_show_their_value_are_kept(value: str, width: int, tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"name: x\ngrowth_rate: 4\nnum_classes: {value}\nblocks: [2]\n")
    assert load_spec(spec).num_classes == width


@pytest.mark.parametrize(
    ("value", "hint"),
    [("'0.5'", True), ('"5e-1"', True), ("inf", False), ("+.5", False), ("'inf'", False)],
)
def test_the_remove_the_quotes_hint_is_for_quoted_numbers_only(problems, value: str, hint: bool) -> None:  # type: ignore[no-untyped-def]
    (problem,) = problems(f"name: x\ngrowth_rate: 4\nblocks: [2, 2]\ncompression: {value}\n")
    assert problem.endswith("(a number in quotes is text: remove the quotes)") == hint


@pytest.mark.parametrize(
    ("text", "advice"),
    [
        ("name: x\nblocks: [2]\ngrowth_rate:\t48\n", "replace the tab with a space"),
        ("name: x\nblocks: [2]\nstem:\n\tkind: cifar\ngrowth_rate: 4\n", "YAML indents with spaces, not tabs"),
    ],
    ids=["separator", "indent"],
)
def test_a_tab_is_told_apart_as_separator_or_indent(problems, text: str, advice: str) -> None:  # type: ignore[no-untyped-def]
    (problem,) = problems(text)
    assert advice in problem
