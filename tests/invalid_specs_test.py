"""The invalid-spec corpus: every file is refused with the expected place, field and message."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from densenet_spec.cli import app
from densenet_spec.errors import SpecError
from densenet_spec.loader import load_spec
from densenet_spec.yaml_nodes import MAX_BYTES

from .conftest import FIXTURES

CORPUS = FIXTURES / "invalid"
EXPECTED: dict[str, dict[str, object]] = yaml.safe_load((CORPUS / "expected.yaml").read_text())


def test_corpus_is_complete() -> None:
    files = {p.name for p in CORPUS.glob("*.yaml")} - {"expected.yaml"}
    assert files == set(EXPECTED)
    assert len(files) >= 25


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_cli_refuses_with_location(name: str, runner: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(CORPUS)
    expected = EXPECTED[name]
    result = runner.invoke(app, ["validate", "--strict", name])
    assert result.exit_code == 1
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    first = result.stderr.splitlines()[0]
    file = expected.get("file", name)
    line = expected["line"]
    where = f"{file}:{line}:" if line is not None else f"{file}: "
    assert first.startswith(where), first
    if expected["field"]:
        assert f": {expected['field']}: " in first, first
    assert str(expected["message"]) in first


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_api_raises_spec_error(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from densenet_spec import compile_spec

    monkeypatch.chdir(CORPUS)
    with pytest.raises(SpecError) as info:
        compile_spec(load_spec(name), strict=True)
    assert info.value.problems


def test_every_problem_is_reported_at_once(runner: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(CORPUS)
    result = runner.invoke(app, ["validate", "many_errors.yaml"])
    lines = result.stderr.splitlines()
    assert [line.split(":")[1] for line in lines] == ["1", "2", "3", "4"]
    assert [line.split(": ")[1] for line in lines] == ["name", "growth_rate", "blocks[0]", "dropout"]


def test_file_over_one_mib_is_refused_without_parsing(tmp_path: Path, runner: CliRunner) -> None:
    big = tmp_path / "big.yaml"
    big.write_text("name: x\n" + "#" * MAX_BYTES + "\n")
    result = runner.invoke(app, ["validate", str(big)])
    assert result.exit_code == 1
    assert "1 MiB" in result.stderr


def test_alias_bomb_is_refused_quickly() -> None:
    import time

    start = time.perf_counter()
    with pytest.raises(SpecError, match="holds more than 10,000 values"):
        load_spec(CORPUS / "alias_bomb.yaml")
    assert time.perf_counter() - start < 1.0


def test_python_tag_runs_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    spec = tmp_path / "evil.yaml"
    spec.write_text(f'name: x\ngrowth_rate: !!python/object/apply:os.system ["touch {marker}"]\nblocks: [1]\n')
    with pytest.raises(SpecError, match="not allowed"):
        load_spec(spec)
    assert not marker.exists()


def test_too_big_is_refused_from_arithmetic_alone() -> None:
    import time

    from densenet_spec import compile_spec

    for name in ("too_many_layers.yaml", "too_many_params.yaml"):
        start = time.perf_counter()
        with pytest.raises(SpecError, match="too many"):
            compile_spec(load_spec(CORPUS / name))
        assert time.perf_counter() - start < 1.0


def test_missing_spec_file(runner: CliRunner) -> None:
    result = runner.invoke(app, ["validate", os.path.join("no", "such.yaml")])
    assert result.exit_code == 1
    assert "no such file or preset" in result.stderr
