"""The spec examples in README.md are valid specs that compile (each one that names itself)."""

from __future__ import annotations

import re
from pathlib import Path

import jsonschema
import pytest
import yaml

from densenet_spec import compile_spec, load_spec
from densenet_spec.schema import json_schema

README = Path(__file__).parent.parent / "README.md"
EXAMPLES = [
    block for block in re.findall(r"```yaml\n(.*?)```", README.read_text(), flags=re.S) if "\nextends:" in block
]


def test_readme_has_examples_of_the_design_space() -> None:
    assert len(EXAMPLES) >= 3
    text = "".join(EXAMPLES)
    assert "densenet121-3d" in text and "anti_alias" in text


@pytest.mark.parametrize("text", EXAMPLES, ids=lambda t: t.split("\n", 1)[0])
def test_readme_example_compiles(text: str, tmp_path: Path) -> None:
    path = tmp_path / "example.yaml"
    path.write_text(text)
    ir = compile_spec(load_spec(path), strict=True)
    assert ir.params > 0


@pytest.mark.parametrize("text", EXAMPLES, ids=lambda t: t.split("\n", 1)[0])
def test_readme_example_is_valid_under_the_json_schema(text: str) -> None:
    """What an editor with the schema says of the README's specs: valid (shorthands included)."""
    jsonschema.validate(yaml.safe_load(text), json_schema())
