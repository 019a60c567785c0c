"""The presets against the outside references: torchvision's counts and the paper's tables."""

from __future__ import annotations

import jsonschema
import pytest
import yaml

from densenet_spec import compile_spec, load_spec
from densenet_spec.loader import preset_dir
from densenet_spec.schema import json_schema

from .conftest import PRESETS

# torchvision's published parameter counts and "GFLOPS" (which are GMACs) at 224x224.
TORCHVISION = {
    "densenet121": (7_978_856, 2.834),
    "densenet161": (28_681_000, 7.728),
    "densenet169": (14_149_480, 3.36),
    "densenet201": (20_013_928, 4.291),
}

# Huang et al. 2017, Table 2: parameters in millions, CIFAR-10 at 32x32.
PAPER_CIFAR = {
    "densenet-40-k12": 1.0,
    "densenet-100-k12": 7.0,
    "densenet-100-k24": 27.2,
    "densenet-bc-100-k12": 0.8,
    "densenet-bc-250-k24": 15.3,
    "densenet-bc-190-k40": 25.6,
}


@pytest.mark.parametrize("name", sorted(TORCHVISION))
def test_torchvision_params_and_macs(name: str) -> None:
    params, gmacs = TORCHVISION[name]
    ir = compile_spec(load_spec(name))
    assert ir.params == params
    assert round(ir.macs / 1e9, 3) == gmacs


@pytest.mark.parametrize("name", sorted(PAPER_CIFAR))
def test_paper_cifar_params(name: str) -> None:
    ir = compile_spec(load_spec(name))
    assert round(ir.params / 1e6, 1) == PAPER_CIFAR[name]


@pytest.mark.parametrize("name", PRESETS)
def test_preset_is_valid_under_json_schema(name: str) -> None:
    data = yaml.safe_load((preset_dir() / f"{name}.yaml").read_text())
    jsonschema.validate(data, json_schema())


@pytest.mark.parametrize("name", PRESETS)
def test_preset_compiles_strictly_and_names_its_source(name: str) -> None:
    spec = load_spec(name)
    assert spec.name == name
    assert any(source in spec.description for source in ("Huang et al. 2017", "MONAI", "timm"))
    assert compile_spec(spec, strict=True).warnings == ()


def test_json_schema_rejects_what_the_loader_rejects() -> None:
    schema = json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    bad = [
        {"name": "x", "growth_rate": 12, "blocks": [1], "growth_rat": 1},
        {"name": "x", "growth_rate": 0, "blocks": [1]},
        {"name": "x", "growth_rate": 12, "blocks": []},
        {"name": "x", "growth_rate": 12, "blocks": [1], "compression": 0},
        {"growth_rate": 12, "blocks": [1]},
    ]
    for data in bad:
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(data, schema)
    jsonschema.validate({"name": "child", "extends": "densenet121", "growth_rate": 48}, schema)


@pytest.mark.parametrize(("key", "kind"), [("activation", "silu"), ("norm", "instance"), ("norm", "none")])
def test_json_schema_takes_the_kind_shorthand_the_loader_takes(key: str, kind: str) -> None:
    data = {"name": "x", "growth_rate": 12, "blocks": [1], key: kind}
    jsonschema.validate(data, json_schema())
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**data, key: "sigmoid"}, json_schema())


def test_json_schema_takes_null_for_another_stem_kinds_key_only() -> None:
    base = {"name": "x", "growth_rate": 12, "blocks": [1]}
    jsonschema.validate({**base, "stem": {"kind": "cifar", "mid_channels": None}}, json_schema())
    for stem in ({"kind": "cifar", "mid_channels": [8, 8]}, {"kind": "imagenet", "chanels": None}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate({**base, "stem": stem}, json_schema())


@pytest.mark.parametrize("stem", ["cifar", "imagenet", "deep"])
def test_json_schema_takes_the_stem_shorthand_the_loader_takes(stem: str) -> None:
    data = {"name": "x", "growth_rate": 12, "blocks": [1], "stem": stem}
    jsonschema.validate(data, json_schema())
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**data, "stem": "cifra"}, json_schema())


def test_compile_spec_of_a_name_says_to_load_it_first() -> None:
    with pytest.raises(TypeError, match=r"compile_spec\(load_spec\('densenet121'\)\)"):
        compile_spec("densenet121")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("key", "value", "valid"),
    [
        ("activation", {"kind": "relu", "negative_slope": 0.2}, False),
        ("activation", {"negative_slope": 0.2}, False),  # relu, the default kind
        ("activation", {"kind": "leaky_relu", "negative_slope": 0.2}, True),
        ("activation", {"kind": "gelu", "alpha": 1.0}, False),
        ("norm", {"kind": "instance", "groups": 4}, False),
        ("norm", {"kind": "none", "affine": True}, False),
        ("norm", {"groups": 4}, False),  # batch, the default kind
        ("norm", {"kind": "group", "groups": 4, "momentum": 0.1}, True),
        ("norm", {"kind": "batch", "groups": None}, True),  # null is the default: allowed
    ],
)
def test_json_schema_takes_a_kinds_own_parameters_only(key: str, value: dict[str, object], valid: bool) -> None:
    """As the loader: an editor flags a parameter of another kind (they passed the schema before)."""
    data = {"name": "x", "growth_rate": 12, "blocks": [1], key: value}
    errors = list(jsonschema.Draft202012Validator(json_schema()).iter_errors(data))
    assert not errors if valid else errors
    from densenet_spec import SpecError, as_ir

    if valid:
        as_ir(data)
    else:
        with pytest.raises(SpecError):
            as_ir(data)
