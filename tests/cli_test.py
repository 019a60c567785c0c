"""The command line: exit codes, stdout/stderr, formats (typer's CliRunner)."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
from typer.testing import CliRunner

from densenet_spec.cli import app

from .conftest import PRESETS


def test_summary_json_has_the_contract_keys(runner: CliRunner) -> None:
    result = runner.invoke(app, ["summary", "densenet121", "--format", "json"])
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert {"name", "params", "macs", "flops", "stages"} <= set(data)
    assert (data["params"], data["macs"], data["flops"]) == (7_978_856, 2_834_161_664, 2 * 2_834_161_664)
    assert [s["name"] for s in data["stages"]][:3] == ["stem", "denseblock1", "transition1"]
    assert sum(s["params"] for s in data["stages"]) == data["params"]
    block1 = data["stages"][1]
    assert (block1["in_channels"], block1["out_channels"], block1["output_size"]) == (64, 256, [56, 56])


def test_summary_table_and_markdown(runner: CliRunner) -> None:
    table = runner.invoke(app, ["summary", "densenet-bc-100-k12"])
    assert table.exit_code == 0
    assert "denseblock3" in table.stdout and "769,162" in table.stdout
    markdown = runner.invoke(app, ["summary", "densenet-bc-100-k12", "-f", "markdown"])
    assert "| transition1 | 16x16 |" in markdown.stdout


def test_validate_many_reports_each(runner: CliRunner, write_spec) -> None:  # type: ignore[no-untyped-def]
    bad = write_spec("name: x\ngrowth_rate: -1\nblocks: [1]\n")
    result = runner.invoke(app, ["validate", "densenet121", str(bad), "densenet-40-k12"])
    assert result.exit_code == 1
    assert result.stdout.count(": ok (") == 2
    assert result.stderr.count("\n") == 1 and "growth_rate" in result.stderr


def test_warning_goes_to_stderr_and_strict_fails(runner: CliRunner, write_spec) -> None:  # type: ignore[no-untyped-def]
    spec = write_spec("name: w\ngrowth_rate: 12\nblocks: [5, 5]\ncompression: 0.3\n")
    relaxed = runner.invoke(app, ["validate", str(spec)])
    assert relaxed.exit_code == 0 and "warning:" in relaxed.stderr
    strict = runner.invoke(app, ["validate", "--strict", str(spec)])
    assert strict.exit_code == 1 and "warning:" not in strict.stderr


def test_wrong_usage_exits_2(runner: CliRunner) -> None:
    assert runner.invoke(app, ["build", "densenet121", "--to", "tensorflow"]).exit_code == 2
    assert runner.invoke(app, ["summary"]).exit_code == 2
    assert runner.invoke(app, ["nope"]).exit_code == 2


def test_schema_command(runner: CliRunner, tmp_path: Path) -> None:
    out = tmp_path / "schema.json"
    result = runner.invoke(app, ["schema", "-o", str(out)])
    assert result.exit_code == 0
    schema = json.loads(out.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    for prop in schema["properties"].values():
        assert prop.get("description"), prop
    stdout = runner.invoke(app, ["schema"])
    assert json.loads(stdout.stdout) == schema


def test_presets_lists_every_preset(runner: CliRunner) -> None:
    result = runner.invoke(app, ["presets", "--format", "json"])
    assert result.exit_code == 0
    listed = {item["name"]: item for item in json.loads(result.stdout)}
    assert set(listed) == set(PRESETS)
    assert listed["densenet161"]["params"] == 28_681_000
    table = runner.invoke(app, ["presets"])
    assert "densenet-bc-190-k40" in table.stdout


def test_build_json_writes_the_ir(runner: CliRunner, tmp_path: Path) -> None:
    out = tmp_path / "ir.json"
    result = runner.invoke(app, ["build", "densenet-40-k12", "--to", "json", "-o", str(out)])
    assert result.exit_code == 0, result.stderr
    data = json.loads(out.read_text())
    assert data["params"] == 1_019_722
    assert data["layers"][1]["inputs"] == ["features.conv0"]


@pytest.mark.parametrize("target", ["json", "torch"])
def test_failed_build_writes_nothing(runner: CliRunner, tmp_path: Path, write_spec, target: str) -> None:  # type: ignore[no-untyped-def]
    bad = write_spec("name: x\ngrowth_rate: 0\nblocks: [1]\n")
    out = tmp_path / "out"
    out.mkdir()
    result = runner.invoke(app, ["build", str(bad), "--to", target, "-o", str(out / "x.txt")])
    assert result.exit_code == 1
    assert list(out.iterdir()) == []


def test_unwritable_output_is_a_clean_error(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(app, ["build", "densenet-40-k12", "--to", "json", "-o", str(tmp_path / "no" / "x.json")])
    assert result.exit_code == 1
    assert "Traceback" not in result.stderr and "No such file" in result.stderr


def test_version(runner: CliRunner) -> None:
    from densenet_spec import __version__

    result = runner.invoke(app, ["--version"])
    assert result.stdout.strip() == f"densenet-spec {__version__}"


def test_python_dash_m_runs_the_cli() -> None:
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "densenet_spec", "validate", "densenet121"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "densenet121: ok" in result.stdout
