"""The command line's rough edges that a new-user trial found: the parser's own usage errors in the
tool's words, -h, titles, list options, what -o writes and says, and summary --optimize in every
format. Each usage error is one ``error: ...`` line on stderr with exit status 2, nothing written."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner, Result

from densenet_spec import build_model
from densenet_spec.cli import app

RUNNER = CliRunner()
TINY = "growth_rate: 4\nblocks: [1, 1]\nstem: cifar\ninput: {size: 8}\nnum_classes: 3\n"
"""A spec (without its name and description) that compiles, builds and exports in well under a second."""
COMMANDS = ["validate", "summary", "build", "infer", "schema", "presets", "bench"]


def _tiny(tmp_path: Path, name: str = "tiny") -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(f"name: {name}\n{TINY}")
    return path


def _error_line(result: Result, status: int = 2) -> str:
    """The single stderr line of a failed command, with its status checked."""
    assert result.exit_code == status, result.output
    assert "Traceback" not in result.output and result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


# 1. --title: control characters and overlong titles are usage errors, before anything is written


@pytest.mark.parametrize(
    ("title", "expected"),
    [
        ("\x01\x1b[31m", "error: --title holds control characters (U+0001, U+001B)"),
        ("x" * 30_000, "error: --title is 30,000 characters; at most"),
    ],
    ids=["control-characters", "30000-characters"],
)
@pytest.mark.parametrize("target", ["svg", "dot", "mermaid"])
def test_a_title_that_no_diagram_can_hold_is_a_usage_error(
    tmp_path: Path, target: str, title: str, expected: str
) -> None:
    out = tmp_path / f"d.{'mmd' if target == 'mermaid' else target}"
    result = RUNNER.invoke(app, ["build", str(_tiny(tmp_path)), "--to", target, "--title", title, "-o", str(out)])
    assert _error_line(result).startswith(expected)
    assert not out.exists()


# 2. and 3. the parser's own errors: one line, the option and what it takes


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["build", "SPEC", "--to", "svg", "--detail", "layer"],
            "error: --detail: 'layer' is not one of blocks, layers",
        ),
        (["build", "SPEC", "--to", "png", "--dpi", "5"], "error: --dpi: 5 is below 10 (the range is 10-2400)"),
        (["build", "SPEC", "--to", "png", "--dpi", "3000"], "error: --dpi: 3000 is above 2400 (the range is 10-2400)"),
        (["build", "SPEC", "--to", "png", "--dpi", "abc"], "error: --dpi: 'abc' is not a number"),
        (["build", "SPEC", "--to", "png", "--dpi", "nan"], "error: --dpi: nan is not a finite number"),
        (["build", "SPEC", "--to", "png", "--dpi", "inf"], "error: --dpi: inf is not a finite number"),
        (["build", "SPEC", "--to", "png", "--dpi", "-inf"], "error: --dpi: -inf is not a finite number"),
        (
            ["build", "SPEC"],
            "error: missing option --to (one of torch, onnx, svg, pdf, dot, png, json, mermaid, heatmap)",
        ),
        (
            ["build", "SPEC", "--to"],
            "error: --to needs a value (one of torch, onnx, svg, pdf, dot, png, json, mermaid, heatmap)",
        ),
        (["build", "SPEC", "--to", "tensorflow"], "error: --to: 'tensorflow' is not one of torch, onnx, svg, pdf"),
        (["bench", "SPEC", "--batch", "0"], "error: --batch: 0 is below 1 (the range is 1-1,000,000)"),
        (["bench", "SPEC", "-b", "x"], "error: --batch: 'x' is not a whole number"),
        (["bench", "SPEC", "--device", "tpu"], "error: --device: 'tpu' is not one of cpu, cuda"),
        (["summary", "SPEC", "-f", "yaml"], "error: --format: 'yaml' is not one of table, json, markdown"),
        (["summary", "SPEC", "--optimise"], "error: no such option --optimise (did you mean --optimize?)"),
        (["summary", "SPEC", "--optimize=1"], "error: --optimize is a flag: it takes no value"),
        (["summary", "SPEC", "other"], "error: unexpected extra argument: other"),
        (["summary"], "error: missing argument SPEC (a spec file (YAML) or a preset name)"),
        (["summ"], "error: no such command 'summ' (did you mean 'summary'?)"),
        (["nope"], f"error: no such command 'nope'; the commands are {', '.join(COMMANDS)}"),
        (["--version", "extra"], "error: --version takes nothing else; got extra"),
    ],
)
def test_the_parsers_usage_errors_are_one_line_in_the_tools_words(
    tmp_path: Path, args: list[str], expected: str
) -> None:
    spec = str(_tiny(tmp_path))
    result = RUNNER.invoke(app, [spec if arg == "SPEC" else arg for arg in args])
    line = _error_line(result)
    assert line.startswith(expected), line
    assert not re.search(r"Usage:|Try '|Value error|Input should", result.output)


def test_help_and_version_are_unchanged() -> None:
    help_text = RUNNER.invoke(app, ["build", "--help"])
    assert help_text.exit_code == 0 and help_text.stdout.startswith("Usage: ")
    assert "[10<=x<=2400]" in help_text.stdout
    version = RUNNER.invoke(app, ["--version"])
    assert version.exit_code == 0 and version.stdout.startswith("densenet-spec ")
    bare = RUNNER.invoke(app, [])  # no arguments: the help, as before
    assert "Commands:" in bare.output and "error:" not in bare.output


# 7. -h is --help


@pytest.mark.parametrize("command", [[], *([name] for name in COMMANDS)])
def test_h_is_help_for_the_app_and_every_command(command: list[str]) -> None:
    short = RUNNER.invoke(app, [*command, "-h"])
    long = RUNNER.invoke(app, [*command, "--help"])
    assert short.exit_code == long.exit_code == 0
    assert short.stdout == long.stdout
    assert "-h, --help" in long.stdout


# 8. list options: empty items are refused alike


@pytest.mark.parametrize(
    ("option", "value", "extra"),
    [
        ("--blocks", "1,,2", ["--to", "svg", "--detail", "layers"]),
        ("--blocks", "1,", ["--to", "svg", "--detail", "layers"]),
        ("--blocks", "", ["--to", "svg", "--detail", "layers"]),
        ("--features", "1,,2", ["--to", "onnx"]),
        ("--features", ",1", ["--to", "onnx"]),
        ("--features", "", ["--to", "onnx"]),
    ],
)
def test_an_empty_item_in_a_list_option_is_a_usage_error(
    tmp_path: Path, option: str, value: str, extra: list[str]
) -> None:
    out = tmp_path / ("d.svg" if option == "--blocks" else "d.onnx")
    result = RUNNER.invoke(app, ["build", str(_tiny(tmp_path)), *extra, option, value, "-o", str(out)])
    assert _error_line(result).startswith(f"error: {option}: an empty item in {value!r}")
    assert not out.exists()


@pytest.mark.parametrize(
    ("option", "value", "extra"),
    [("--blocks", "1, 2", ["--to", "svg", "--detail", "layers"]), ("--features", "1,2", ["--to", "onnx"])],
)
def test_list_options_without_empty_items_still_work(tmp_path: Path, option: str, value: str, extra: list[str]) -> None:
    out = tmp_path / ("d.svg" if option == "--blocks" else "d.onnx")
    result = RUNNER.invoke(app, ["build", str(_tiny(tmp_path)), *extra, option, value, "-o", str(out)])
    assert result.exit_code == 0, result.stderr
    assert out.is_file()


# 6. schema -o and infer -o say what they wrote; schema does not write over a spec


def test_schema_says_what_it_wrote(tmp_path: Path) -> None:
    out = tmp_path / "s.json"
    result = RUNNER.invoke(app, ["schema", "-o", str(out)])
    assert result.exit_code == 0, result.stderr
    assert result.stderr == f"wrote {out} ({out.stat().st_size:,} bytes)\n"
    assert RUNNER.invoke(app, ["schema"]).stderr == ""  # stdout: the schema alone


def test_schema_does_not_write_over_a_spec(tmp_path: Path) -> None:
    spec = _tiny(tmp_path, "ok")
    before = spec.read_text()
    result = RUNNER.invoke(app, ["schema", "-o", str(spec)])
    line = _error_line(result)
    assert line == f"error: -o {spec}: that names a spec file, which schema does not write; choose another name"
    assert spec.read_text() == before


def test_infer_says_what_it_wrote(tmp_path: Path) -> None:
    import torch

    checkpoint = tmp_path / "ckpt.pt"
    torch.save(build_model(_tiny(tmp_path), seed=0).state_dict(), checkpoint)
    out = tmp_path / "inf.yaml"
    result = RUNNER.invoke(app, ["infer", str(checkpoint), "-o", str(out)])
    assert result.exit_code == 0, result.stderr
    assert result.stderr == f"wrote {out} (spec 'ckpt' of ckpt.pt, {out.stat().st_size:,} bytes)\n"


# 10. an explicit -o that Python cannot use: written, with a warning that says why


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("torch.py", "would shadow the torch module it imports (python torch.py would fail"),
        ("typing.py", "would shadow the typing module it imports"),
        ("json.py", "would shadow the json module of Python's standard library"),
        ("numpy.py", "would shadow numpy, which torch imports when it starts"),
        ("class.py", "cannot be imported (class is a Python keyword)"),
    ],
)
def test_an_explicit_output_python_cannot_use_is_written_with_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, why: str
) -> None:
    spec = _tiny(tmp_path)
    monkeypatch.chdir(tmp_path)
    result = RUNNER.invoke(app, ["build", str(spec), "--to", "torch", "-o", name])
    assert result.exit_code == 0, result.stderr
    warning, wrote = result.stderr.splitlines()
    assert warning.startswith(f"warning: -o {name} {why}"), warning
    assert warning.endswith(f"written as asked (a name such as {Path(name).stem}_net.py avoids it)")
    assert wrote.startswith(f"wrote {name} (")
    assert (tmp_path / name).is_file()


@pytest.mark.parametrize("name", ["my_tiny_net.py", "a.torch.py", "x.yaml.torch.py", "my-net.py"])
def test_an_explicit_output_that_shadows_nothing_has_no_warning(tmp_path: Path, name: str) -> None:
    """Names that are not Python names (a dot or a hyphen in the stem) are found by no import."""
    out = tmp_path / name
    result = RUNNER.invoke(app, ["build", str(_tiny(tmp_path)), "--to", "torch", "-o", str(out)])
    assert result.exit_code == 0 and "warning" not in result.stderr, result.stderr


# 11. Mermaid into Markdown: a fenced block


@pytest.mark.parametrize("suffix", [".md", ".markdown", ".MD"])
def test_mermaid_into_a_markdown_file_is_fenced(tmp_path: Path, suffix: str) -> None:
    bare = tmp_path / "m.mmd"
    fenced = tmp_path / f"m{suffix}"
    for out in (bare, fenced):
        result = RUNNER.invoke(app, ["build", str(_tiny(tmp_path)), "--to", "mermaid", "-o", str(out)])
        assert result.exit_code == 0, result.stderr
    chart = bare.read_text()
    assert chart.startswith("---\ntitle: ") and "```" not in chart
    assert fenced.read_text() == f"```mermaid\n{chart}```\n"


def test_mermaid_to_stdout_stays_bare(tmp_path: Path) -> None:
    result = RUNNER.invoke(app, ["build", str(_tiny(tmp_path)), "--to", "mermaid", "-o", "-"])
    assert result.exit_code == 0 and not result.stdout.startswith("```")


# 5. tables: no trailing blanks, no dangling colon


@pytest.mark.parametrize("args", [["summary", "densenet121"], ["summary", "densenet121", "--optimize"], ["presets"]])
def test_table_lines_have_no_trailing_whitespace(args: list[str]) -> None:
    result = RUNNER.invoke(app, args)
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) > 5
    assert [line for line in lines if line != line.rstrip()] == []


def test_a_spec_without_a_description_is_titled_by_its_name(tmp_path: Path) -> None:
    result = RUNNER.invoke(app, ["summary", str(_tiny(tmp_path, "v1d"))])
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines()[0] == "v1d"


# 4. summary --optimize: the same facts in every format


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in re.split(r"[│┃|]", line)[1:-1]]


def test_summary_optimize_says_the_same_in_every_format() -> None:
    spec = "densenet-40-k12"
    table = RUNNER.invoke(app, ["summary", spec, "--optimize"], env={"COLUMNS": "250"})
    markdown = RUNNER.invoke(app, ["summary", spec, "--optimize", "-f", "markdown"])
    data = json.loads(RUNNER.invoke(app, ["summary", spec, "--optimize", "-f", "json"]).stdout)
    plain = json.loads(RUNNER.invoke(app, ["summary", spec, "-f", "json"]).stdout)
    assert table.exit_code == markdown.exit_code == 0

    header = "| stage | output size | layers | channels | params | MACs | unoptimized MACs | saved |"
    assert header in markdown.stdout
    md_rows = [_cells(line) for line in markdown.stdout.splitlines() if line.startswith("| ") and "---" not in line]
    table_rows = [_cells(line) for line in table.stdout.splitlines() if line.startswith(("┃ ", "│ "))]
    assert md_rows[0] == table_rows[0] == header.strip("| ").split(" | ")
    assert md_rows[1:] == table_rows[1:]  # the same cells, row by row

    # the rows describe the optimised network, the transition's pool first, with the plain MACs and the saving
    transition = next(row for row in md_rows if row[0] == "transition1")
    assert transition[2] == "2x2 avg pool/2, 1x1 conv"
    stage = next(s for s in data["stages"] if s["name"] == "transition1")
    before = next(s for s in plain["stages"] if s["name"] == "transition1")
    assert stage["layers"] == transition[2] and stage["unoptimized"] == {"macs": before["macs"]}
    assert transition[4:] == [f"{stage['params']:,}", f"{stage['macs']:,}", f"{before['macs']:,}", "75.0%"]
    assert stage["saved"] == pytest.approx(0.75)

    # the totals: the table's totals row, its footer, the markdown's and the JSON agree
    total = md_rows[-1]
    assert total == ["total", "", "", "", f"{data['params']:,}", f"{data['macs']:,}", f"{plain['macs']:,}", "14.1%"]
    assert data["unoptimized"] == {"params": plain["params"], "macs": plain["macs"]}
    assert data["saved"] == pytest.approx(1 - data["macs"] / plain["macs"])
    footer = f"params {data['params']:,}   MACs {data['macs']:,} "
    assert footer in table.stdout
    note = (
        f"optimized by swap_transition_pool, fold_batchnorm; unoptimized: params {plain['params']:,}, "
        f"MACs {plain['macs']:,}; 14.1% of the MACs saved"
    )
    assert note in table.stdout.splitlines() and note in markdown.stdout.splitlines()


def test_summary_without_optimize_is_unchanged() -> None:
    data = json.loads(RUNNER.invoke(app, ["summary", "densenet-40-k12", "-f", "json"]).stdout)
    assert "unoptimized" not in data and "saved" not in data
    assert all("saved" not in stage for stage in data["stages"])
    markdown = RUNNER.invoke(app, ["summary", "densenet-40-k12", "-f", "markdown"]).stdout
    assert "| stage | output size | layers | channels | params | MACs |\n" in markdown
    assert "unoptimized" not in markdown


def test_a_file_named_like_the_preset_read_is_not_the_spec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``build densenet121`` reads the preset, so ``-o densenet121`` here writes over a file that is
    not the spec read (it was refused as naming the spec); the spec's own file is still refused."""
    monkeypatch.chdir(tmp_path)
    Path("densenet-40-k12").write_text("old\n")
    result = RUNNER.invoke(app, ["build", "densenet-40-k12", "--to", "dot", "-o", "densenet-40-k12"])
    assert result.exit_code == 0, result.output
    assert "digraph" in Path("densenet-40-k12").read_text()
    spec = _tiny(tmp_path)
    again = RUNNER.invoke(app, ["build", str(spec), "--to", "dot", "-o", str(spec)])
    assert again.exit_code == 2 and "names a spec file" in again.stderr


def test_weights_for_the_torch_source_say_where_they_go(tmp_path: Path) -> None:
    result = RUNNER.invoke(app, ["build", "densenet-40-k12", "--to", "torch", "--optimize", "--weights", "w.pt"])
    line = _error_line(result)
    assert line == (
        "error: --weights does not apply to --to torch: the source holds no weights; its folded ones (any "
        "checkpoint layout) are the state_dict in `_, state = densenet_spec.optimize('densenet-40-k12', "
        "'w.pt')`: build().load_state_dict(state)"
    )
    plain = RUNNER.invoke(app, ["build", "densenet-40-k12", "--to", "torch", "--weights", "w.pt"])
    assert _error_line(plain) == (
        "error: --weights does not apply to --to torch: the source holds no weights; load yours into its "
        "build() with load_state_dict"
    )


def test_the_hinted_call_gives_the_optimised_source_its_weights(tmp_path: Path) -> None:
    """What the hint says to run works: the generated --optimize source, given the folded weights
    of a checkpoint, computes what optimize_for_inference of the model with those weights does."""
    import runpy

    import densenet_spec
    from densenet_spec import optimize_for_inference

    model = build_model("densenet-40-k12", seed=3).eval()
    weights = tmp_path / "w.pt"
    torch.save(model.state_dict(), weights)
    source = tmp_path / "net_fast.py"
    result = RUNNER.invoke(app, ["build", "densenet-40-k12", "--to", "torch", "--optimize", "-o", str(source)])
    assert result.exit_code == 0, result.stderr
    _, state = densenet_spec.optimize("densenet-40-k12", str(weights))
    net = runpy.run_path(str(source))["build"]().eval()
    net.load_state_dict(state)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(net(x), optimize_for_inference(model)(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--version", "--version"], None),  # said twice is still the version
        (["-h", "--version"], None),  # help wins, as click has it
        (["--version", ""], "error: --version takes nothing else; got ''"),
        (["--version", "a", "b"], "error: --version takes nothing else; got a b"),
    ],
)
def test_version_with_others(args: list[str], expected: str | None) -> None:
    result = RUNNER.invoke(app, args)
    if expected is None:
        assert result.exit_code == 0 and result.stdout
    else:
        assert _error_line(result) == expected


@pytest.mark.parametrize("name", ["w.pt", "w.PTH", "w.ckpt", "w.safetensors", "w.bin"])
def test_build_never_writes_over_a_checkpoint(tmp_path: Path, name: str) -> None:
    """``-o w.pt`` for ``w.py`` replaced a 3 MB checkpoint with Python source."""
    out = tmp_path / name
    out.write_bytes(b"weights")
    result = RUNNER.invoke(app, ["build", "densenet-40-k12", "--to", "torch", "-o", str(out)])
    assert (
        _error_line(result)
        == f"error: -o {out}: that names a checkpoint file, which build does not write; choose another name"
    )
    assert out.read_bytes() == b"weights"


def test_features_naming_a_tap_twice_is_refused_as_in_python() -> None:
    result = RUNNER.invoke(app, ["build", "densenet-40-k12", "--to", "onnx", "--features", "1,1", "-o", "-"])
    assert _error_line(result) == "error: --features: 1,1 names a tap twice"


def test_blocks_naming_a_block_twice_is_refused_as_in_python() -> None:
    from densenet_spec import emit

    result = RUNNER.invoke(app, ["build", "densenet121", "--to", "dot", "--detail", "layers", "--blocks", "2,2"])
    assert result.exit_code == 2 and _error_line(result) == "error: --blocks: 2,2 names a block twice"
    with pytest.raises(ValueError, match=r"^blocks: \[2, 2\] names a block twice$"):
        emit("densenet121", "dot", {"detail": "layers", "blocks": [2, 2]})


def test_piped_tables_do_not_wrap_their_rows() -> None:
    """summary --optimize's extra columns wrapped every row at 120 columns when piped (27 lines
    against the plain table's 17)."""
    plain = RUNNER.invoke(app, ["summary", "densenet121"]).stdout.splitlines()
    optimized = RUNNER.invoke(app, ["summary", "densenet121", "--optimize"]).stdout.splitlines()
    assert len(optimized) <= len(plain) + 1  # the note line on the passes
