"""Shared fixtures: the presets, the CLI runner, paths."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from densenet_spec import preset_names

TESTS = Path(__file__).parent
FIXTURES = TESTS / "fixtures"
PRESETS = preset_names()
IMAGENET_PRESETS = [p for p in PRESETS if not p.startswith("densenet-")]
CIFAR_PRESETS = [p for p in PRESETS if p.startswith("densenet-")]


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def write_spec(tmp_path: Path):  # type: ignore[no-untyped-def]
    """Write a spec file into tmp_path and return its path."""

    def write(text: str, name: str = "spec.yaml") -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path

    return write
