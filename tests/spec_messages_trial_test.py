"""Messages for bad spec files, fixed after a second new-user trial.

1. A single-number ``input.size`` under a 1-D or 3-D parent is refused at the child's size (it
   would silently make the network 2-D); a list of another rank stays allowed.
2. Group norm's refusal names what made the failing width (a compression that floors included).
3. The compiler's errors and warnings placed in a parent file name the child, as the schema's do.
4. A .json spec may use tabs as whitespace, as JSON allows (``json.dump(d, f, indent="\\t")``).
5. Suggestions ignore case: ``BLOCKS`` is ``blocks``, ``ReLU`` is ``relu``.
6. A stem key of another stem kind says which kind takes it, as norm and activation keys do.
7. Messages name the spec file as the user typed it; its parents follow its style (absolute for an
   absolute path; else relative to the working directory where they lie under it, else absolute).
8. ``blocks: 6`` says to write ``[6]``; keys left unindented under an empty mapping key are named;
   the JSON that ``build`` and ``summary`` write is named as such; a warning about the default
   compression is placed at the block whose width it floors.
9. Every parameter of another kind in a mapping is reported, and an octal-looking number hides
   no other problem.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from densenet_spec import SpecError, compile_spec, load_spec
from densenet_spec.cli import app

BASE = "name: x\ngrowth_rate: 12\nblocks: [2]\n"


@pytest.fixture
def problems(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """Every problem of a spec (loaded and compiled) as the CLI prints it, the file as spec.yaml."""
    monkeypatch.chdir(tmp_path)

    def run(content: str, name: str = "spec.yaml") -> list[str]:
        (tmp_path / name).write_text(content)
        try:
            ir = compile_spec(load_spec(name))
        except SpecError as exc:
            return [str(p) for p in exc.problems]
        return [str(p) for p in ir.warnings]

    return run


# ----------------------------------------------------------------------------- 1. rank through a scalar size


@pytest.mark.parametrize(
    ("parent", "size", "expected"),
    [
        (
            "densenet121-1d",
            2048,
            "spec.yaml:3:15: input.size: densenet121-1d is 1-D ([1024]); write [2048] to keep it 1-D "
            "(or a list of 2 sizes for a 2-D network)",
        ),
        (
            "densenet121-3d",
            128,
            "spec.yaml:3:15: input.size: densenet121-3d is 3-D ([96, 96, 96]); write [128, 128, 128] to keep "
            "it 3-D (or a list of 2 sizes for a 2-D network)",
        ),
    ],
)
def test_a_scalar_size_under_a_parent_of_another_rank_is_refused(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, parent: str, size: int, expected: str
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "spec.yaml").write_text(f"name: x1\nextends: {parent}\ninput: {{size: {size}}}\n")
    result = runner.invoke(app, ["validate", "spec.yaml"])
    assert result.exit_code == 1 and "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [expected]


@pytest.mark.parametrize(
    ("parent", "size", "rank"),
    [
        ("densenet121-1d", "[64, 64]", 2),  # a list of another rank: deliberate
        ("densenet121-3d", "[64, 64]", 2),
        ("densenet121-1d", "[2048]", 1),
        ("densenet121", "448", 2),  # a 2-D parent: a scalar keeps the rank
    ],
)
def test_a_size_that_keeps_or_deliberately_changes_the_rank_loads(
    write_spec, parent: str, size: str, rank: int
) -> None:  # type: ignore[no-untyped-def]
    spec = load_spec(write_spec(f"name: x\nextends: {parent}\ninput: {{size: {size}}}\n"))
    assert spec.rank == rank


def test_a_rank_slip_is_reported_with_the_other_problems(problems) -> None:  # type: ignore[no-untyped-def]
    found = problems("name: x\nextends: densenet121-1d\ninput: {size: 2048}\ndropout: 2\n")
    assert [line.split(": ")[1] for line in found] == ["input.size", "dropout"]


def test_a_rank_slip_overridden_further_down_the_chain_is_gone(problems, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "mid.yaml").write_text("name: mid\nextends: densenet121-1d\ninput: {size: 2048}\n")
    assert problems("name: y\nextends: mid.yaml\ninput: {size: [2048]}\n") == []
    (slip,) = problems("name: y\nextends: mid.yaml\n")
    assert slip.startswith("mid.yaml:3:15: input.size: densenet121-1d is 1-D ([1024])")
    assert slip.endswith("(inherited by spec.yaml: override it there)")


# ----------------------------------------------------------------------------- 2. group-norm advice


@pytest.mark.parametrize(
    ("fields", "advice"),
    [
        (  # the trial's spec: 0.7 x 256 keeps 179
            "extends: densenet121\nnorm: {kind: group, groups: 16}\ncompression: 0.7\n",
            "features.denseblock2.denselayer1.norm1 has 179 channels, which 16 groups do not divide (and 54 more "
            "norms); 179 is what features.transition1 keeps of its 256 maps at compression 0.7 (floor(0.7 x 256)): "
            "choose a compression that keeps a multiple of 16",
        ),
        (
            "growth_rate: 16\nblocks: [{layers: 2, compression: 0.75}, 2]\nnorm: {kind: group, groups: 16}\n"
            "stem: {channels: 64}\n",
            "72 is what features.transition1 keeps of its 96 maps at blocks[0].compression 0.75 "
            "(floor(0.75 x 96)): choose a blocks[0].compression that keeps a multiple of 16; "
            "or norm.groups: 8, which divides every norm's channels",
        ),
        (
            "growth_rate: 12\nblocks: [2, 2]\nnorm: {kind: group, groups: 16}\nstem: {kind: cifar, channels: 32}\n",
            "denselayer2.norm1 has 44 channels, which 16 groups do not divide (and 4 more norms); each layer of "
            "denseblock1 adds 12 channels (growth_rate), which 16 groups do not divide: make growth_rate a multiple "
            "of 16; or norm.groups: 4, which divides every norm's channels",
        ),
        (
            "growth_rate: 24\nblocks: [2, {layers: 2, growth_rate: 20}]\nnorm: {kind: group, groups: 8}\n"
            "stem: {kind: cifar, channels: 32}\nbottleneck_width: 2\n",
            "each layer of denseblock2 adds 20 channels (blocks[1].growth_rate)",
        ),
        (
            "growth_rate: 12\nblocks: [2, 2]\nnorm: {kind: group, groups: 16}\nstem: cifar\n",
            "24 is the stem's width, 2 x growth_rate by default: set stem.channels (or growth_rate) to a multiple",
        ),
        (
            "growth_rate: 12\nblocks: [2, 2]\nnorm: {kind: group, groups: 32}\nstem: {channels: 64}\n",
            "denselayer1.norm2 has 48 channels, which 32 groups do not divide (and 8 more norms); 48 is the "
            "bottleneck width, bottleneck_width 4 x growth rate 12: make it a multiple of 32",
        ),
        (
            "growth_rate: 16\nblocks: [2, 2]\nnorm: {kind: group, groups: 32}\nstem: deep\n",
            "features.norm0 has 16 channels, which 32 groups do not divide (and 3 more norms); 16 is a width of "
            "the deep stem's first convolutions, growth_rate by default: set stem.mid_channels to multiples of 32",
        ),
    ],
)
def test_group_norm_advice_names_what_made_the_width(problems, fields: str, advice: str) -> None:  # type: ignore[no-untyped-def]
    first = problems("name: g1\n" + fields)[0]
    assert ": norm.groups: " in first and advice in first


def test_a_refused_spec_shows_no_warnings(problems) -> None:  # type: ignore[no-untyped-def]
    """The refusal names the compression that floors: the warnings would repeat it, or be thousands
    of lines about a network that is not built (5,000 blocks)."""
    found = problems("name: g1\nextends: densenet121\nnorm: {kind: group, groups: 16}\ncompression: 0.7\n")
    assert len(found) == 1 and "floor(0.7 x 256)" in found[0]


# ----------------------------------------------------------------------------- 3. the compiler's problems in a parent


CT_PARENT = (
    "name: ct\ninput: {channels: 1, size: [32, 32, 32]}\ngrowth_rate: 32\nblocks: [2, 2]\n"
    "norm: {kind: group, groups: 8}\n"
)


@pytest.mark.parametrize(
    ("child", "expected"),
    [
        (
            "name: ct-k12\nextends: ct.yaml\ngrowth_rate: 12\n",
            "ct.yaml:5:29: norm.groups: features.denseblock1.denselayer2.norm1 has 36 channels, which 8 groups",
        ),
        (
            "name: ct-k16\nextends: ct.yaml\ngrowth_rate: 16\n",
            "ct.yaml:2:28: input.size: warning: 32x32x32 is small for the imagenet stem",
        ),
    ],
)
def test_compiler_problems_in_a_parent_name_the_child(  # type: ignore[no-untyped-def]
    problems, tmp_path: Path, child: str, expected: str
) -> None:
    (tmp_path / "ct.yaml").write_text(CT_PARENT)
    (first,) = problems(child)[:1]
    assert first.startswith(expected)
    assert first.endswith("(inherited by spec.yaml: override it there)")


def test_compiler_problems_in_the_specs_own_file_name_no_child(problems) -> None:  # type: ignore[no-untyped-def]
    (first,) = problems(CT_PARENT.replace("growth_rate: 32", "growth_rate: 12"))[:1]
    assert first.startswith("spec.yaml:5:29: norm.groups: ") and "inherited" not in first


def test_a_warning_at_a_preset_names_the_child(problems) -> None:  # type: ignore[no-untyped-def]
    found = problems("name: k-odd\nextends: densenet121\ngrowth_rate: 33\n")
    assert len(found) == 2
    for line in found:
        assert "densenet121.yaml:8:14: compression: warning: " in line
        assert line.endswith("(inherited by spec.yaml: override it there)")


# ----------------------------------------------------------------------------- 4. tabs in JSON


SMALL = {"name": "j1", "growth_rate": 12, "blocks": [2, 2], "stem": "cifar", "input": {"size": [32, 32]}}


@pytest.mark.parametrize(
    "text",
    [
        json.dumps(SMALL, indent="\t"),
        json.dumps(SMALL).replace(", ", ",\t").replace(": ", ":\t"),  # tabs between tokens on one line
        json.dumps(SMALL, indent="\t", separators=(",", ":")),
    ],
)
def test_json_with_tabs_loads(tmp_path: Path, text: str) -> None:
    path = tmp_path / "spec.json"
    path.write_text(text)
    assert load_spec(path).model_dump(exclude_defaults=True) == load_spec_from_text(tmp_path, json.dumps(SMALL))


def load_spec_from_text(tmp_path: Path, text: str) -> dict[str, object]:
    path = tmp_path / "plain.json"
    path.write_text(text)
    return load_spec(path).model_dump(exclude_defaults=True)


def test_json_tabs_keep_every_line_and_column(problems) -> None:  # type: ignore[no-untyped-def]
    text = json.dumps({**SMALL, "growth_rate": 0}, indent="\t")
    assert problems(text, "spec.json") == ["spec.json:3:17: growth_rate: 0 is out of range: must be an integer >= 1"]


def test_a_tab_inside_a_json_string_is_left_alone(problems) -> None:  # type: ignore[no-untyped-def]
    text = json.dumps(SMALL, indent="\t").replace('"j1"', '"j\t1"')  # a raw tab: not JSON, and not a name
    (problem,) = problems(text, "spec.json")
    assert problem.startswith("spec.json:2:10: name: 'j\\t1' is not a valid name")


def test_tabs_in_a_yaml_file_are_still_refused(problems) -> None:  # type: ignore[no-untyped-def]
    (problem,) = problems(json.dumps(SMALL, indent="\t"), "spec.yaml")
    assert problem.startswith("spec.yaml:2:1: invalid YAML: ") and "YAML indents with spaces, not tabs" in problem


# ----------------------------------------------------------------------------- 5. case


def test_keys_in_another_case_get_a_suggestion_and_one_line_each(problems) -> None:  # type: ignore[no-untyped-def]
    assert problems("Name: m10\nGrowth_Rate: 12\nBLOCKS: [2, 2]\n") == [
        "spec.yaml:1:1: Name: unknown key 'Name'; did you mean 'name'?",
        "spec.yaml:2:1: Growth_Rate: unknown key 'Growth_Rate'; did you mean 'growth_rate'?",
        "spec.yaml:3:1: BLOCKS: unknown key 'BLOCKS'; did you mean 'blocks'?",
    ]


@pytest.mark.parametrize(
    ("line", "suggestion"),
    [
        ("activation: ReLU\n", "did you mean 'relu'?"),
        ("head: {POOL: max}\n", "did you mean 'pool'?"),
        ("stem: CIFAR\n", "did you mean 'cifar'?"),
    ],
)
def test_values_and_nested_keys_in_another_case_get_a_suggestion(problems, line: str, suggestion: str) -> None:  # type: ignore[no-untyped-def]
    (problem,) = problems("name: x\ngrowth_rate: 4\nblocks: [2]\n" + line)
    assert problem.endswith(suggestion)


def test_a_preset_name_in_another_case_gets_a_suggestion(runner: CliRunner) -> None:
    result = runner.invoke(app, ["validate", "DenseNet121"])
    assert result.exit_code == 1 and "did you mean 'densenet121'?" in result.stderr


# ----------------------------------------------------------------------------- 6. another stem kind's key


@pytest.mark.parametrize(
    ("stem", "expected"),
    [
        (
            "{kind: cifar, mid_channels: [8, 8]}",
            "spec.yaml:4:21: stem.mid_channels: mid_channels applies to deep stems only, not cifar; remove it",
        ),
        (
            "{mid_channels: [8, 8]}",  # the default kind, imagenet
            "spec.yaml:4:8: stem.mid_channels: mid_channels applies to deep stems only, not imagenet; remove it",
        ),
        (  # a typo is still a typo, suggested from the kind's own keys
            "{kind: deep, mid_channel: [8, 8]}",
            "spec.yaml:4:20: stem.mid_channel: unknown key 'mid_channel'; did you mean 'mid_channels'?",
        ),
    ],
)
def test_a_key_of_another_stem_kind_says_which_kind_takes_it(problems, stem: str, expected: str) -> None:  # type: ignore[no-untyped-def]
    assert problems(BASE + f"stem: {stem}\n") == [expected]


def test_an_inherited_key_of_another_stem_kind_says_which_kind_takes_it(problems, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "deep.yaml").write_text(BASE + "stem: {kind: deep, mid_channels: [8, 8]}\n")
    assert problems("name: x\nextends: deep.yaml\nstem: {kind: imagenet}\n") == [
        "deep.yaml:4:20: stem.mid_channels: mid_channels applies to deep stems only, not imagenet; remove it "
        "(inherited by spec.yaml: set it to null there to drop it)"
    ]


# ----------------------------------------------------------------------------- 7. paths as typed


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """tmp/x/p.yaml (growth_rate 0) and tmp/x/b/e.yaml (dropout 2) that extends it."""
    (tmp_path / "x" / "b").mkdir(parents=True)
    (tmp_path / "x" / "p.yaml").write_text("name: p\ngrowth_rate: 0\nblocks: [2]\n")
    (tmp_path / "x" / "b" / "e.yaml").write_text("name: e\nextends: ../p.yaml\ndropout: 2\n")
    return tmp_path


@pytest.mark.parametrize(
    ("cwd", "typed", "child", "parent"),
    [
        (".", "{root}/x/b/e.yaml", "{root}/x/b/e.yaml", "{root}/x/p.yaml"),  # absolute stays absolute
        ("x/b", "{root}/x/b/e.yaml", "{root}/x/b/e.yaml", "{root}/x/p.yaml"),
        (".", "x/b/e.yaml", "x/b/e.yaml", "x/p.yaml"),
        ("x/b", "./e.yaml", "./e.yaml", "{root}/x/p.yaml"),  # the parent is not under the working directory
        ("x/b", "../b/e.yaml", "../b/e.yaml", "{root}/x/p.yaml"),
        ("x", "b/e.yaml", "b/e.yaml", "p.yaml"),
    ],
)
def test_paths_in_messages_follow_what_the_user_typed(  # type: ignore[no-untyped-def]
    runner: CliRunner, tree: Path, monkeypatch: pytest.MonkeyPatch, cwd: str, typed: str, child: str, parent: str
) -> None:
    root = str(tree.resolve())
    monkeypatch.chdir(tree / cwd)
    result = runner.invoke(app, ["validate", typed.format(root=root)])
    assert result.exit_code == 1
    child, parent = child.format(root=root), parent.format(root=root)
    assert result.stderr.splitlines() == [
        f"{child}:3:10: dropout: 2 is out of range: must be 0 <= dropout < 1",
        f"{parent}:2:14: growth_rate: 0 is out of range: must be an integer >= 1 (inherited by {child}: override it "
        "there)",
    ]


def test_an_absolute_path_under_the_working_directory_stays_absolute(
    runner: CliRunner, tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The trial's case: run from /, the file was shown as tmp/x/b/e15.yaml."""
    monkeypatch.chdir(tree.resolve().anchor)
    path = str((tree / "x" / "p.yaml").resolve())
    result = runner.invoke(app, ["validate", path])
    assert result.stderr.startswith(f"{path}:2:14: growth_rate: ")


# ----------------------------------------------------------------------------- 8. small ones


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("blocks: 6\n", "spec.yaml:3:9: blocks: must be a list, not 6: write [6]"),
        ("blocks: 6, 12\n", "spec.yaml:3:9: blocks: must be a list, not '6, 12': write [6, 12]"),  # YAML's text
        ("blocks: 6 12 24\n", "spec.yaml:3:9: blocks: must be a list, not '6 12 24': write [6, 12, 24]"),
        ("blocks: [2]\nstem: {kind: deep, mid_channels: 8}\n", "mid_channels: must be a list, not 8: write [8, 8]"),
        ("blocks: true\n", "spec.yaml:3:9: blocks: must be a list, not true"),
        ("blocks: abc\n", "spec.yaml:3:9: blocks: must be a list, not 'abc'"),
    ],
)
def test_a_scalar_for_a_list_says_how_to_write_the_list(problems, line: str, expected: str) -> None:  # type: ignore[no-untyped-def]
    (problem,) = problems("name: x\ngrowth_rate: 12\n" + line)
    assert problem.endswith(expected)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            BASE + "input:\nchannels: 1\nsize: 32\n",
            [
                "spec.yaml:4:7: input: is empty, and the lines below hold its keys (channels, size) at the top "
                "level: indent them under 'input:'"
            ],
        ),
        (
            BASE + "norm:\nkind: group\ngroups: 4\ndropout: 0.1\nfoo: 1\n",  # dropout is the top level's own
            [
                "spec.yaml:4:6: norm: is empty, and the lines below hold its keys (kind, groups) at the top level: "
                "indent them under 'norm:'",
                "spec.yaml:8:1: foo: unknown key 'foo'; allowed keys: name, description, extends, input, stem, "
                "growth_rate, blocks, bottleneck_width, compression, dropout, activation, norm, anti_alias, head, "
                "num_classes",
            ],
        ),
        (BASE + "head:\n", ["spec.yaml:4:6: head: must be a mapping of keys, not null"]),
    ],
)
def test_keys_left_unindented_under_an_empty_mapping_are_named(problems, text: str, expected: list[str]) -> None:  # type: ignore[no-untyped-def]
    assert problems(text) == expected


@pytest.mark.parametrize(
    ("command", "made_by"),
    [
        (["build", "densenet-40-k12", "--to", "json", "-o", "out.json"], "`densenet-spec build --to json`"),
        (["build", "densenet121", "--to", "json", "-o", "out.json"], "`densenet-spec build --to json`"),  # 10,000+
        (["summary", "densenet-40-k12", "--format", "json"], "`densenet-spec summary --format json`"),
    ],
)
def test_the_json_the_tool_writes_is_not_taken_for_a_spec(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: list[str], made_by: str
) -> None:
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, command)
    assert result.exit_code == 0
    if not (tmp_path / "out.json").exists():
        (tmp_path / "out.json").write_text(result.stdout)
    result = runner.invoke(app, ["validate", "out.json"])
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"out.json:1:1: this is what {made_by} writes from a spec, not a spec: give the spec it was made from "
        "(a .yaml file or a preset name)"
    ]


@pytest.mark.parametrize(
    ("blocks", "where"),
    [("blocks: [5, 12]\n", "spec.yaml:3:10"), ("blocks:\n  - 5\n  - 12\n", "spec.yaml:4:5")],
)
def test_a_default_compression_warning_is_placed_at_the_block_it_floors(problems, blocks: str, where: str) -> None:  # type: ignore[no-untyped-def]
    assert problems("name: x\ngrowth_rate: 33\n" + blocks) == [
        f"{where}: compression: warning: features.transition1: 0.5 (the default compression) x 231 = 115.5 maps "
        "is not an integer; 115 are kept (floor)"
    ]


# ----------------------------------------------------------------------------- 9. all at once


@pytest.mark.parametrize(
    ("line", "fields"),
    [
        (
            "norm: {kind: none, eps: 0.001, momentum: 0.5, affine: true}\n",
            ["norm.eps", "norm.momentum", "norm.affine"],
        ),
        (
            "activation: {kind: relu, alpha: 1.0, negative_slope: 0.1, approximate: tanh}\n",
            ["activation.alpha", "activation.negative_slope", "activation.approximate"],
        ),
        ("norm: {kind: instance, groups: 4}\n", ["norm.groups"]),
    ],
)
def test_every_parameter_of_another_kind_is_reported(problems, line: str, fields: list[str]) -> None:  # type: ignore[no-untyped-def]
    found = problems(BASE + line)
    assert [p.split(": ")[1] for p in found] == fields
    assert all(p.endswith("; remove it") for p in found)


def test_an_octal_number_hides_no_other_problem(problems) -> None:  # type: ignore[no-untyped-def]
    assert problems("name: oc\ngrowth_rate: 012\nblocks: [00]\ndropout: 2\nfoo: 1\n") == [
        "spec.yaml:2:14: growth_rate: 012 reads as 10 (YAML 1.1 reads a leading 0 as octal); write the number you "
        "mean without it",
        "spec.yaml:3:10: blocks[0]: 00 reads as 0 (YAML 1.1 reads a leading 0 as octal); write the number you mean "
        "without it",  # one line for the field: not also "0 is out of range"
        "spec.yaml:4:10: dropout: 2 is out of range: must be 0 <= dropout < 1",
        "spec.yaml:5:1: foo: unknown key 'foo'; allowed keys: name, description, extends, input, stem, growth_rate, "
        "blocks, bottleneck_width, compression, dropout, activation, norm, anti_alias, head, num_classes",
    ]


def test_an_octal_number_alone_is_still_refused(problems) -> None:  # type: ignore[no-untyped-def]
    (problem,) = problems("name: oc\ngrowth_rate: 012\nblocks: [2]\n")
    assert problem.startswith("spec.yaml:2:14: growth_rate: 012 reads as 10")
