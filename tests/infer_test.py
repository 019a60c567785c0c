"""infer_spec: the spec of a checkpoint's network, from its tensor shapes alone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from densenet_spec import IR, Spec, SpecError, build_model, compile_spec, load_spec, preset_names
from densenet_spec.cli import app
from densenet_spec.infer import infer, infer_spec, to_yaml


def _state(ir: IR) -> dict[str, torch.Tensor]:
    """A state_dict with the network's keys and shapes (what infer reads), without building it."""
    return {key: torch.zeros(shape) for key, shape in ir.state_shapes().items()}


def _same_network(spec: Spec, inferred: Spec) -> None:
    """Same keys and shapes, params, and MACs at the same input size (what the weights cannot tell)."""
    original = compile_spec(spec)
    at_size = inferred.model_copy(update={"input": spec.input, "anti_alias": spec.anti_alias})
    again = compile_spec(at_size)
    assert again.state_shapes() == original.state_shapes()
    assert compile_spec(inferred).params == original.params
    assert again.macs == original.macs


@pytest.mark.parametrize("name", preset_names())
def test_every_preset_round_trips(name: str) -> None:
    spec = load_spec(name)
    inferred = infer_spec(_state(compile_spec(spec)))
    _same_network(spec, inferred)


@pytest.mark.parametrize("name", ["densenet121", "densenet161", "densenet169", "densenet201"])
def test_torchvision_densenets_infer_to_the_presets_cost(name: str) -> None:
    preset = compile_spec(load_spec(name))
    inferred = compile_spec(infer_spec(_state(preset)))
    assert (inferred.params, inferred.macs) == (preset.params, preset.macs)
    assert inferred.info.input_size == (224, 224)


def test_a_built_models_checkpoint_loads_strictly_into_its_inferred_spec() -> None:
    spec = Spec.model_validate(
        {
            "name": "x",
            "input": {"channels": 2, "size": 48},
            "stem": "deep",
            "growth_rate": 6,
            "blocks": [2, {"layers": 3, "growth_rate": 4, "compression": 0.3}, 2],
        }
        | {"compression": 0.75, "num_classes": 3, "head": {"pool": "catavgmax"}}
    )
    model = build_model(spec, seed=0).eval()
    inferred = infer_spec(model.state_dict())
    assert inferred.compression == 0.75 and inferred.head.pool == "catavgmax"
    rebuilt = build_model(inferred, weights=model.state_dict()).eval()
    x = torch.randn(2, 2, 48, 48)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x), model(x))


def test_monai_3d_checkpoint() -> None:
    monai = pytest.importorskip("monai.networks.nets")
    reference = monai.DenseNet121(spatial_dims=3, in_channels=1, out_channels=2)
    found = infer(reference.state_dict())
    assert found.layout.name == "MONAI"
    spec = found.spec
    assert (spec.rank, spec.input.channels, spec.num_classes, spec.growth_rate) == (3, 1, 2, 32)
    assert spec.block_layers == [(6, 32), (12, 32), (24, 32), (16, 32)]
    assert compile_spec(spec).params == compile_spec(load_spec("densenet121-3d")).params


def test_norms_are_told_where_the_tensors_tell() -> None:
    def norm_of(norm: Any) -> tuple[Any, tuple[str, ...]]:
        spec = Spec.model_validate(
            {"name": "n", "input": {"size": 32}, "growth_rate": 4, "blocks": [2, 2], "norm": norm}
        )
        found = infer(_state(compile_spec(spec)))
        return found.spec.norm, found.unknown

    assert norm_of("batch")[0].kind == "batch"
    assert norm_of({"kind": "batch", "affine": False})[0].is_affine is False
    group, unknown = norm_of({"kind": "group", "groups": 2})
    assert group.kind == "group" and group.groups == 4  # a count that divides every norm; which one is a guess
    assert any(line.startswith("norm: group with 4 groups") for line in unknown)
    none, unknown = norm_of("instance")  # not affine: no tensors at all
    assert none.kind == "none" and any("instance norm without affine" in line for line in unknown)


def test_not_a_densenet_is_refused_with_a_reason() -> None:
    with pytest.raises(SpecError, match=r"cannot infer a spec: no features\.conv0\.weight"):
        infer_spec({"layer.weight": torch.zeros(3, 3)})
    state = _state(compile_spec(load_spec("densenet-40-k12")))
    state["features.denseblock1.denselayer2.conv1.weight"] = torch.zeros(12, 99, 3, 3)
    with pytest.raises(SpecError, match=r"do not follow a DenseNet's arithmetic at features\.denseblock1\.denselayer2"):
        infer_spec(state)


# ----------------------------------------------------------------------------- random specs


@st.composite
def specs(draw: st.DrawFn) -> Spec:
    """Specs over everything the weights tell: rank, stem, per-block k, bottleneck and compression, norm, head."""
    rank = draw(st.sampled_from([1, 2, 3]))
    stem = draw(st.sampled_from(["imagenet", "cifar", "deep"]))
    k = draw(st.integers(1, 8))
    count = draw(st.integers(1, 4))
    blocks: list[Any] = []
    for b in range(count):
        own = draw(
            st.fixed_dictionaries(
                {},
                optional={
                    "growth_rate": st.integers(1, 8),
                    "bottleneck_width": st.sampled_from([None, 1, 3]),
                    **({"compression": st.sampled_from([0.3, 0.5, 0.7, 1.0, 0.25])} if b < count - 1 else {}),
                },
            )
        )
        layers = draw(st.integers(1, 3))
        blocks.append({"layers": layers, **own} if own else layers)
    norm = draw(
        st.sampled_from(
            ["batch", "none", "instance", {"kind": "batch", "affine": False}, {"kind": "group", "groups": 1}]
        )
    )
    stem_fields: dict[str, Any] = {"kind": stem, "channels": draw(st.none() | st.integers(1, 12))}
    if stem == "deep":
        stem_fields["mid_channels"] = draw(st.none() | st.lists(st.integers(1, 8), min_size=2, max_size=2))
    shrink = (1 if stem == "cifar" else 4) * 2 ** (count - 1)
    return Spec.model_validate(
        {
            "name": "random",
            "input": {"channels": draw(st.integers(1, 4)), "size": [2 * shrink] * rank},
            "stem": stem_fields,
            "growth_rate": k,
            "blocks": blocks,
            "bottleneck_width": draw(st.sampled_from([None, 1, 2, 4])),
            "compression": draw(st.sampled_from([0.5, 1.0, 0.6, 0.35])),
            "norm": norm,
            "head": {"pool": draw(st.sampled_from(["avg", "catavgmax"]))},
            "num_classes": draw(st.integers(0, 5)),
        }
    )


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
@given(specs())
def test_random_specs_round_trip(spec: Spec) -> None:
    try:
        ir = compile_spec(spec)
    except SpecError:  # a transition keeping no maps: not a network
        return
    checkpoint = build_model(ir, seed=0).state_dict()
    inferred = infer_spec(checkpoint)
    _same_network(spec, inferred)
    build_model(inferred, weights=checkpoint)  # strictly


def test_inference_reads_the_shapes_and_compiles_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """What keeps infer fast on deep checkpoints (densenet-bc-250-k24: 1,000+ tensors): the spec
    is read off the shapes in one pass and compiled once to check it, never searched for (a
    count, not a time: a timed test fails on a busy machine)."""
    from densenet_spec import infer as infer_module

    spec = load_spec("densenet-bc-250-k24")
    state = _state(compile_spec(spec))
    calls: list[str] = []
    real = infer_module.compile_spec
    monkeypatch.setattr(infer_module, "compile_spec", lambda s: calls.append(s.name) or real(s))
    _same_network(spec, infer_spec(state))
    assert len(calls) == 1


# ----------------------------------------------------------------------------- YAML and the command line


def test_yaml_lists_what_the_weights_cannot_tell_and_loads_back(tmp_path: Path) -> None:
    spec = load_spec("densenetblur121d")
    found = infer(_state(compile_spec(spec)), name="blur")
    text = to_yaml(found, "ckpt.pt")
    header = [line for line in text.splitlines() if line.startswith("#")]
    assert header[0].startswith("# Inferred by densenet-spec") and "from ckpt.pt (timm layout)" in header[0]
    for field in ("activation: relu", "input.size: 224", "anti_alias: none", "dropout", "head.pool: avg"):
        assert any(field in line for line in header), field
    path = tmp_path / "blur.yaml"
    path.write_text(text)
    assert load_spec(path).model_dump() == found.spec.model_dump()
    assert yaml.safe_load(text)["stem"] == {"kind": "deep", "channels": 64, "mid_channels": [32, 32]}


def test_cli_infer_writes_a_spec_the_checkpoint_loads_into(tmp_path: Path) -> None:
    runner = CliRunner()
    ckpt = tmp_path / "My Model.pth"
    torch.save({"state_dict": build_model("densenet-bc-100-k12", seed=0).state_dict()}, ckpt)
    out = tmp_path / "spec.yaml"
    result = runner.invoke(app, ["infer", str(ckpt), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert load_spec(out).name == "my-model"
    onnx = tmp_path / "m.onnx"
    built = runner.invoke(app, ["build", str(out), "--to", "onnx", "--weights", str(ckpt), "-o", str(onnx)])
    assert built.exit_code == 0, built.output
    stdout = runner.invoke(app, ["infer", str(ckpt)])
    assert stdout.exit_code == 0 and "growth_rate: 12" in stdout.stdout


def test_cli_infer_refuses_without_a_traceback(tmp_path: Path) -> None:
    path = tmp_path / "other.pt"
    torch.save({"encoder.weight": torch.zeros(2, 2)}, path)
    result = CliRunner().invoke(app, ["infer", str(path)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output.startswith(f"{path}: cannot infer a spec: no features.conv0.weight")


def test_infer_spec_is_at_the_package_top_as_the_readme_writes_it() -> None:
    import densenet_spec

    spec = densenet_spec.infer_spec(build_model("densenet-40-k12").state_dict(), name="x")
    assert (spec.name, spec.growth_rate, spec.block_layers) == ("x", 12, [(12, 12), (12, 12), (12, 12)])


@pytest.mark.parametrize("name", ["densenet-bc-100-k12", "densenet-40-k12", "densenet-bc-250-k24"])
def test_cifar_stem_checkpoints_infer_at_cifars_size(name: str) -> None:
    """The paper's CIFAR networks: inferred at 32x32, so their MACs are the preset's (at 224 they
    were 49 times too many)."""
    preset = compile_spec(load_spec(name))
    inferred = compile_spec(infer_spec(_state(preset)))
    assert inferred.info.input_size == (32, 32)
    assert (inferred.params, inferred.macs) == (preset.params, preset.macs)


def test_a_backbone_cut_after_a_tap_is_named_as_such() -> None:
    """Its tensors all fit; what is missing is the rest of the network (the message listed keys the
    checkpoint does not hold as not following a DenseNet's arithmetic)."""
    cut = build_model("densenet-40-k12", features_only=True, out_indices=(0, 1), seed=0).state_dict()
    with pytest.raises(SpecError, match=r"the checkpoint ends before features\.norm5\.bias") as info:
        infer_spec(cut)
    assert "a spec needs the whole network's weights" in str(info.value)
    whole = build_model("densenet-40-k12", features_only=True, seed=0).state_dict()  # up to norm5
    assert infer_spec(whole).num_classes == 0


def test_infer_spec_unwraps_what_the_loaders_unwrap() -> None:
    """A checkpoint dict as torch.load returns it (wrapped, prefixed) infers as the file does."""
    state = build_model("densenet-40-k12", seed=0).state_dict()
    wrapped = {"model_state_dict": {f"module.{k}": v for k, v in state.items()}, "epoch": 3}
    assert infer_spec(wrapped).blocks == infer_spec(state).blocks == [12, 12, 12]
    with pytest.raises(SpecError, match="a holds an int, not a tensor"):
        infer_spec({"a": 1})  # type: ignore[dict-item]
