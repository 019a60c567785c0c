"""Messages for bad spec files, polished after a new-user trial.

1. YAML syntax errors point at the place to fix: a '[', '{' or quote left open is shown where it
   opens, not at the end of the file; a stray ']' and a key glued to its value are named.
2. A file that is not UTF-8 gets its line and column, and a UTF-16 file is recognised as such.
3. ``yes``, ``off``, ``~`` in a field that takes a name say how YAML read them; a field that takes
   a name or a mapping says so; a scalar where a mapping goes suggests the mapping that takes it.
4. One typo is one line: a missing key that an unknown key's did-you-mean names is not repeated.
5. An alias bomb is located at the alias that expands, not at the small anchored value.
6. A preset's name means the preset, whatever the working directory holds.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from densenet_spec import SpecError, compile_spec, load_spec
from densenet_spec.cli import app
from densenet_spec.loader import preset_dir
from densenet_spec.schema import Spec

BASE = "name: x\ngrowth_rate: 4\nblocks: [2]\n"


@pytest.fixture
def problems(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """Every problem of a spec (text or bytes; loaded and compiled) as the CLI prints it, the file as spec.yaml."""
    monkeypatch.chdir(tmp_path)

    def run(content: str | bytes, name: str = "spec.yaml") -> list[str]:
        data = content.encode() if isinstance(content, str) else content
        (tmp_path / name).write_bytes(data)
        try:
            compile_spec(load_spec(name))
        except SpecError as exc:
            return [str(p) for p in exc.problems]
        return []

    return run


# ----------------------------------------------------------------------------- 1. YAML syntax


def test_an_unclosed_flow_sequence_is_shown_where_it_opens(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "syn.yaml").write_text("name: x\ngrowth_rate: 12\nblocks: [2, 2\n")
    result = CliRunner().invoke(app, ["validate", "syn.yaml"])
    assert result.exit_code == 1 and "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [
        "syn.yaml:3:9: invalid YAML: the '[' opened here is never closed (expected ',' or ']' by the end of "
        "the file, line 4): add the ']'"
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "name: x\ngrowth_rate: 12\nnorm: {kind: batch, eps: 0.1\n",
            "spec.yaml:3:7: invalid YAML: the '{' opened here is never closed (expected ',' or '}' by the end of "
            "the file, line 4): add the '}'",
        ),
        (
            "name: x\ngrowth_rate: 12\nnorm: {kind: batch\nblocks: [2]\n",
            "spec.yaml:3:7: invalid YAML: the '{' opened here is not closed on its line (YAML read on to line 4, "
            "column 7, and found ':' where it expected ',' or '}'): add the '}'",
        ),
        (
            "name: x\ngrowth_rate: 12\nblocks: [[2, 2]\nnorm: batch\n",
            "spec.yaml:3:9: invalid YAML: the '[' opened here is not closed on its line (YAML read on to line 4, "
            "column 1, and found a value where it expected ',' or ']'): add the ']'",
        ),
        (
            "name: x\nblocks: [2, 2  # two blocks\ngrowth_rate: 4\n",
            "spec.yaml:2:9: invalid YAML: the '[' opened here is not closed on its line",
        ),
        (
            'name: x\ndescription: "hello\ngrowth_rate: 12\nblocks: [2]\n',
            "spec.yaml:2:14: invalid YAML: the '\"' opened here is never closed (YAML read on to the end of the "
            "file): add the closing '\"'",
        ),
        (
            "name: x\ndescription: 'hello\ngrowth_rate: 12\nblocks: [2]\n",
            'spec.yaml:2:14: invalid YAML: the "\'" opened here is never closed',
        ),
        (
            'name: x\ndescription: "hello\n---\ngrowth_rate: 12\n',
            "spec.yaml:2:14: invalid YAML: the '\"' opened here is never closed (YAML read on to the '---' on line 3)",
        ),
    ],
    ids=["brace-eof", "brace-next-key", "nested-bracket", "bracket-comment", "quote", "single-quote", "quote-doc"],
)
def test_what_is_left_open_is_shown_where_it_opens(problems, text: str, expected: str) -> None:  # type: ignore[no-untyped-def]
    (problem,) = problems(text)
    assert problem.startswith(expected), problem


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (  # a collection written over several lines: the problem's own line, naming the opening's
            "name: x\nnorm: {kind: group,\n  groups: 8 eps: 0.1}\n",
            "spec.yaml:3:16: invalid YAML: expected ',' or '}' here, but found ':' (in the '{' opened at line 2: "
            "a ',' or '}' missing before it, or a ': ' in a value that needs quotes?)",
        ),
        (
            "name: x\ngrowth_rate: 4\nblocks: [2, 2}\n",
            "spec.yaml:3:14: invalid YAML: expected ',' or ']' here, but found '}' (the '[' opened at column 9 is "
            "closed with '}': write ']')",
        ),
        (
            "name: x\ngrowth_rate: 4\nblocks: [2, 2]]\n",
            "spec.yaml:3:15: invalid YAML: a ']' that closes no '[': remove it",
        ),
        (
            'name: "x" y\ngrowth_rate: 4\nblocks: [2]\n',
            "spec.yaml:1:11: invalid YAML: a value after a complete value on the same line: remove it, or put the "
            "whole value in quotes",
        ),
        (
            "name: x\ngrowth_rate 4\nblocks: [2]\n",
            "spec.yaml:2:1: invalid YAML: a line that is neither 'key: value' nor '- item': is the ':' after the "
            "key missing, or the space after it?",
        ),
        (
            "name:x\ngrowth_rate: 4\nblocks: [2]\n",
            "spec.yaml:1:1: invalid YAML: 'name:x' reads as one value, not a key and its value: put a space after "
            "the ':' (name: x)",
        ),
        (  # a value with a ':' in it, then an over-indented key: the key's line, as before
            "name: x\ndescription: a:b\n  growth_rate: 4\n",
            "spec.yaml:3:14: invalid YAML: mapping values are not allowed here",
        ),
        (
            "name: x\ngrowth_rate: 12\nblocks: [2]\ninput:\n    channels: 1\n  size: 32\n",
            "spec.yaml:6:3: invalid YAML: bad indentation: this line does not line up with the lines above it",
        ),
    ],
    ids=["multi-line", "wrong-closer", "stray-closer", "after-value", "no-colon", "glued", "colon-value", "indent"],
)
def test_other_structural_errors_name_the_line_to_fix(problems, text: str, expected: str) -> None:  # type: ignore[no-untyped-def]
    (problem,) = problems(text)
    assert problem.startswith(expected), problem


# ----------------------------------------------------------------------------- 2. encodings


def test_a_latin1_file_gets_line_and_column(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "latin1.yaml").write_bytes("growth_rate: 4\nname: été\nblocks: [2]\n".encode("latin-1"))
    result = CliRunner().invoke(app, ["validate", "latin1.yaml"])
    assert result.exit_code == 1 and "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [
        "latin1.yaml:2:7: not UTF-8 text (byte 0xe9 at offset 21: invalid continuation byte; Latin-1 or "
        "Windows-1252 text?); save the file as UTF-8"
    ]


def test_the_column_counts_characters_not_bytes(problems) -> None:  # type: ignore[no-untyped-def]
    (problem,) = problems("name: x\ndescription: café ".encode() + b"\xe9t\xe9\n" + b"growth_rate: 4\nblocks: [2]\n")
    assert problem.startswith("spec.yaml:2:19: not UTF-8 text (byte 0xe9 at offset 27: ")


@pytest.mark.parametrize(
    ("encoding", "expected"),
    [
        ("utf-16", "UTF-16 (it starts with a UTF-16 byte-order mark)"),
        ("utf-16-le", "UTF-16 (a NUL byte before or after most characters)"),
        ("utf-16-be", "UTF-16 (a NUL byte before or after most characters)"),
        ("utf-32", "UTF-32 (it starts with a UTF-32 byte-order mark)"),
    ],
)
def test_a_utf16_file_is_named_as_such(problems, encoding: str, expected: str) -> None:  # type: ignore[no-untyped-def]
    assert problems(BASE.encode(encoding)) == [f"spec.yaml: not UTF-8 text: it looks like {expected}; save it as UTF-8"]


def test_a_stray_nul_byte_is_still_a_nul_byte(problems) -> None:  # type: ignore[no-untyped-def]
    (problem,) = problems(b"name: x\ngrowth_rate: 4\nblocks: [2]\ndescri\x00ption: x\n")
    assert problem == "spec.yaml:4:7: a NUL byte (U+0000) in the file: a spec is plain text; remove it"


def test_a_utf8_bom_is_fine(problems) -> None:  # type: ignore[no-untyped-def]
    assert problems(BASE.encode("utf-8-sig")) == []


# ----------------------------------------------------------------------------- 3. YAML's booleans and nulls


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (
            "anti_alias: yes",
            "spec.yaml:4:13: anti_alias: must be one of none, stem, all, not true (YAML reads yes as the boolean "
            "true, not as a name)",
        ),
        (
            "anti_alias: off",
            "spec.yaml:4:13: anti_alias: must be one of none, stem, all, not false (YAML reads off as the boolean "
            "false, not as a name): write anti_alias: none",
        ),
        ("anti_alias: No", "not false (YAML reads No as the boolean false, not as a name): write anti_alias: none"),
        ("anti_alias: ~", "not null (YAML reads ~ as null, not as a name): write anti_alias: none"),
        ("anti_alias: null", "not null (null is YAML's null, not a name): write anti_alias: none"),
        ("anti_alias:", "not null (an empty value is null in YAML): write anti_alias: none"),
        (
            "head: {pool: on}",
            "head.pool: must be one of avg, max, avgmax, catavgmax, not true (YAML reads on as the boolean true, "
            "not as a name)",
        ),
        ("norm: {kind: off}", "norm.kind: must be one of batch, group, instance, none, not false"),
        ("activation: {kind: gelu, approximate: no}", "(YAML reads no as the boolean false, not as a name)"),
        (
            "norm: off",
            "spec.yaml:4:7: norm: takes a name (batch, group, instance, none) or a mapping such as "
            "{kind: group, groups: 8}, not false (YAML reads off as the boolean false, not as a name): "
            "write norm: none",
        ),
        ("norm: null", "norm: takes a name (batch, group, instance, none) or a mapping such as"),
        (
            "activation: false",
            "activation: takes a name (relu, relu6, leaky_relu, elu, gelu, silu, mish, hardswish) or a mapping "
            "such as {kind: leaky_relu, negative_slope: 0.1}, not false (YAML reads false as the boolean false, "
            "not as a name)",
        ),
        (
            "stem: yes",
            "stem: must be one of 'imagenet', 'cifar', 'deep', or a mapping such as {kind: cifar, channels: 32}, "
            "not true (YAML reads yes as the boolean true, not as a name)",
        ),
    ],
)
def test_booleans_and_nulls_where_a_name_goes_say_how_yaml_read_them(problems, line: str, expected: str) -> None:  # type: ignore[no-untyped-def]
    (problem,) = problems(BASE + line + "\n")
    assert problem.startswith(expected) if expected.startswith("spec.yaml") else expected in problem, problem


@pytest.mark.parametrize(
    ("line", "suggested"),
    [
        ("head: avg", ["head: {pool: avg}"]),
        ("head: catavgmax", ["head: {pool: catavgmax}"]),
        ("head: 0.2", ["head: {dropout: 0.2}"]),
        ("input: 64", ["input: {channels: 64}", "input: {size: 64}"]),
        ("input: [64, 48]", ["input: {size: [64, 48]}"]),
        ("stem: 32", ["stem: {channels: 32}"]),
        ("norm: 0.001", ["norm: {eps: 0.001}", "norm: {momentum: 0.001}"]),
        ("norm: 1e-3", ["norm: {eps: 1e-3}", "norm: {momentum: 1e-3}"]),  # as written
    ],
)
def test_a_scalar_where_a_mapping_goes_suggests_the_mapping(problems, line: str, suggested: list[str]) -> None:  # type: ignore[no-untyped-def]
    (problem,) = problems(BASE + line + "\n")
    assert problem.endswith(f"; did you mean {' or '.join(suggested)}?"), problem
    for fix in suggested:  # each suggestion is a valid spec
        assert problems(BASE + fix + "\n") == [], fix


def test_the_mapping_suggestion_is_made_only_where_one_fits(problems) -> None:  # type: ignore[no-untyped-def]
    assert problems(BASE + "head: maxx\n") == ["spec.yaml:4:7: head: must be a mapping of keys, not 'maxx'"]
    (problem,) = problems(BASE + "activation: 0.1\n")  # negative_slope is leaky_relu's, not relu's
    assert "did you mean" not in problem
    assert problems(BASE + "input: yes\n") == ["spec.yaml:4:8: input: must be a mapping of keys, not true"]


# ----------------------------------------------------------------------------- 4. one typo, one line


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "name: x\nGrowth_Rate: 12\nblocks: [2]\n",
            "spec.yaml:2:1: Growth_Rate: unknown key 'Growth_Rate'; did you mean 'growth_rate'?",
        ),
        (
            "name: x\ngrowth_rate: 4\nblocks: [{lay: 2}]\n",
            "spec.yaml:3:11: blocks[0].lay: unknown key 'lay'; did you mean 'layers'?",
        ),
        ("nme: x\ngrowth_rate: 4\nblocks: [2]\n", "spec.yaml:1:1: nme: unknown key 'nme'; did you mean 'name'?"),
    ],
)
def test_a_misspelt_required_key_is_one_problem(problems, text: str, expected: str) -> None:  # type: ignore[no-untyped-def]
    assert problems(text) == [expected]


def test_a_missing_key_no_unknown_key_names_is_still_reported(problems) -> None:  # type: ignore[no-untyped-def]
    assert problems("name: x\nk: 12\nblocks: [2]\n") == [
        "spec.yaml:1:1: growth_rate: missing required key 'growth_rate'",
        "spec.yaml:2:1: k: unknown key 'k'; allowed keys: " + ", ".join(Spec.model_fields),
    ]


# ----------------------------------------------------------------------------- 5. alias bombs

BOMB = (
    "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
    "b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
    "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\n"
    "d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
    "name: x\n"
)


def test_an_alias_bomb_is_located_at_the_alias_that_expands(problems) -> None:  # type: ignore[no-untyped-def]
    (problem,) = problems(BOMB)
    assert problem == (
        "spec.yaml:4:36: the document holds more than 10,000 values by here, in what the alias *c repeats "
        "(counting what YAML aliases and merge keys repeat); a spec is a small mapping"
    )


def test_a_merge_key_bomb_is_located_at_the_alias_that_expands(problems) -> None:  # type: ignore[no-untyped-def]
    lines = ["a0: &a0 {" + ", ".join(f"k{i}: {i}" for i in range(10)) + "}"]
    for level in range(1, 5):
        lines.append(f"a{level}: &a{level} {{<<: [{', '.join([f'*a{level - 1}'] * 10)}], z{level}: 1}}")
    (problem,) = problems("\n".join(lines) + "\nname: x\n")
    assert re.match(
        r"spec\.yaml:4:\d+: the document holds more than 10,000 values by here, in what the alias \*a2 ", problem
    )


def test_a_large_document_without_aliases_is_located_at_its_value(problems) -> None:  # type: ignore[no-untyped-def]
    items = ", ".join(["1"] * 10_050)
    (problem,) = problems(f"name: x\ngrowth_rate: 4\nblocks: [{items}]\n")
    assert problem.startswith("spec.yaml:3:") and "values by here (counting" in problem


def test_aliases_in_a_valid_spec_load_as_before(problems) -> None:  # type: ignore[no-untyped-def]
    text = (
        "name: x\ngrowth_rate: &k 4\nblocks: &b [2, {layers: 1, growth_rate: *k}]\n"
        "input: &i {channels: 1, size: 32}\nstem: {<<: {kind: cifar}, channels: *k}\nhead: {<<: &h {dropout: 0.1}}\n"
    )
    assert problems(text) == []
    spec = load_spec("spec.yaml")
    assert spec.block_layers == [(2, 4), (1, 4)] and spec.stem.channels == 4 and spec.head.dropout == 0.1


# ----------------------------------------------------------------------------- 6. presets and files


def test_a_preset_name_means_the_preset_whatever_the_folder_holds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "densenet121").write_text("name: mine\ngrowth_rate: 4\nblocks: [2]\n")
    (tmp_path / "densenet169").mkdir()
    (tmp_path / "myspec").write_text("name: other\ngrowth_rate: 4\nblocks: [2]\n")
    assert load_spec("densenet121").name == "densenet121"
    assert load_spec("./densenet121").name == "mine"
    assert load_spec(tmp_path / "densenet121").name == "mine"  # a path with a folder is a path
    assert load_spec("densenet169").name == "densenet169"
    assert load_spec("myspec").name == "other"  # a file without a suffix, named like no preset
    result = CliRunner().invoke(app, ["validate", "densenet121", "./densenet121"])
    assert result.exit_code == 0
    assert "(densenet121: " in result.stdout and "(mine: " in result.stdout


def test_the_rule_is_documented() -> None:
    reference = (Path(__file__).parent.parent / "docs" / "spec-reference.md").read_text()
    assert "a preset's name (`densenet121`) always means the" in reference
    assert (preset_dir() / "densenet121.yaml").is_file()
