"""Checkpoints of torchvision, timm and MONAI load into the spec of the same network; adaptation on request.

timm and torchvision do not import here (CUDA builds), so their checkpoints are made from our own
model, whose keys are theirs; MONAI's come from the installed ``monai``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

from densenet_spec import Spec, SpecError, build_model, compile_spec, emit
from densenet_spec.cli import app
from densenet_spec.interop import adapt_input_conv, load_weights
from densenet_spec.weights import canonical_state

SMALL: dict[str, Any] = {"name": "small", "input": {"size": 32}, "growth_rate": 4, "blocks": [2, 3], "num_classes": 5}


def _spec(**fields: Any) -> Spec:
    return Spec.model_validate(SMALL | fields)


def _outputs_equal(a: torch.nn.Module, b: torch.nn.Module, x: torch.Tensor) -> None:
    with torch.no_grad():
        torch.testing.assert_close(a.eval()(x), b.eval()(x), atol=1e-5, rtol=1e-5)


# ----------------------------------------------------------------------------- MONAI


@pytest.mark.parametrize(("rank", "size"), [(2, [64, 64]), (3, [32, 32, 32])])
def test_monai_densenet121_loads_with_identical_outputs(rank: int, size: list[int]) -> None:
    monai = pytest.importorskip("monai.networks.nets")
    torch.manual_seed(0)
    reference = monai.DenseNet121(spatial_dims=rank, in_channels=1, out_channels=2).eval()
    for module in reference.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 1.5)
    spec = Spec.model_validate(
        {"name": "m", "input": {"channels": 1, "size": size}, "growth_rate": 32, "blocks": [6, 12, 24, 16]}
        | {"num_classes": 2}
    )
    ours = build_model(spec, weights=reference.state_dict())
    assert ours.load_report is not None and ours.load_report.layout.name == "MONAI"
    _outputs_equal(ours, reference, torch.randn(2, 1, *size))


# ----------------------------------------------------------------------------- torchvision, wrappers


def _torchvision_old_names(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Keys as torchvision saved them before module names could not hold dots: norm.1, conv.2."""
    import re

    return {re.sub(r"(denselayer\d+\.(?:norm|relu|conv))([12])\.", r"\1.\2.", k): v for k, v in state.items()}


@pytest.mark.parametrize(
    "wrap",
    [
        lambda s: s,
        lambda s: {f"module.{k}": v for k, v in s.items()},
        lambda s: {"state_dict": {f"model.{k}": v for k, v in s.items()}, "epoch": torch.tensor(3.0)},
        lambda s: {"model": _torchvision_old_names(s)},
        lambda s: {"model_state_dict": s, "optimizer_state_dict": {"state": {}}, "epoch": 3},
        lambda s: {"state_dict_ema": s, "epoch": 3},
    ],
    ids=["plain", "ddp", "lightning", "old-torchvision", "tutorial", "ema-only"],
)
@pytest.mark.parametrize("given", ["file", "in-memory"])
def test_torchvision_layout_checkpoints_load(tmp_path: Path, wrap: Any, given: str) -> None:
    reference = build_model(_spec(), seed=1)
    checkpoint = wrap(reference.state_dict())
    path = tmp_path / "ckpt.pt"
    torch.save(checkpoint, path)
    ours = build_model(_spec(), weights=path if given == "file" else checkpoint)
    assert ours.load_report is not None and ours.load_report.layout.name == "torchvision"
    _outputs_equal(ours, reference, torch.randn(2, 3, 32, 32))


def test_in_memory_state_dict_entries_are_checked_like_a_file_s() -> None:
    state = build_model(_spec(), seed=1).state_dict()
    with pytest.raises(SpecError) as bad_entry:
        build_model(_spec(), weights={**state, "meta": "x"})
    assert [str(p) for p in bad_entry.value.problems] == ["<state_dict>: meta holds a str, not a tensor"]
    with pytest.raises(SpecError) as elsewhere:
        build_model(_spec(), weights={"weights": state, "epoch": 3})
    assert "weights holds an OrderedDict, not a tensor" in str(elsewhere.value)
    assert "no tensors at all: is the state_dict under another key? ('weights', 'epoch')" in str(elsewhere.value)


def test_old_timm_blur_filters_are_accepted_and_dropped() -> None:
    spec = _spec(stem={"kind": "deep"}, anti_alias="all")
    reference = build_model(spec, seed=2)
    state = reference.state_dict()
    blur = {
        key: torch.full((4, 1, 3, 3), 1 / 16) for key in ("features.pool0.1.filt", "features.transition1.pool.filt")
    }
    loaded, report = load_weights(state | blur, compile_spec(spec))
    assert set(loaded) == set(state)
    assert report.layout.name == "timm" and report.layout.dropped == tuple(blur)
    assert "dropped 2 blur-pool filters" in report.lines()[0]
    _outputs_equal(build_model(spec, weights=state | blur), reference, torch.randn(2, 3, 32, 32))


def test_layouts_are_told_apart() -> None:
    state = build_model(_spec(), seed=0).state_dict()
    monai = {
        k.replace("denselayer1.", "denselayer1.layers.").replace("classifier.", "class_layers.out."): v
        for k, v in state.items()
    }
    assert canonical_state(monai)[1].name == "MONAI"
    assert canonical_state(monai)[0].keys() == state.keys()
    assert canonical_state(state)[1].name == "torchvision"
    deep = build_model(_spec(stem="deep"), seed=0).state_dict()
    assert canonical_state(deep)[1].name == "timm"


# ----------------------------------------------------------------------------- adaptation


@pytest.fixture(scope="module")
def densenet121_state() -> dict[str, torch.Tensor]:
    model = build_model("densenet121", seed=0).eval()
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_var.uniform_(0.5, 1.5)
    return model.state_dict()


def test_adapted_to_one_channel_sees_a_gray_image_as_the_original_sees_it_in_rgb(
    densenet121_state: dict[str, torch.Tensor],
) -> None:
    original = build_model("densenet121", weights=densenet121_state).eval()
    gray_spec = Spec.model_validate(
        {"name": "gray", "input": {"channels": 1}, "growth_rate": 32, "blocks": [6, 12, 24, 16], "num_classes": 10}
    )
    gray = build_model(gray_spec, weights=densenet121_state, adapt=True, seed=0).eval()
    x = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(
            gray.forward_head(gray.forward_features(x), pre_logits=True),
            original.forward_head(original.forward_features(x.repeat(1, 3, 1, 1)), pre_logits=True),
            atol=1e-4,
            rtol=1e-4,
        )
        assert gray(x).shape == (2, 10)
    assert gray.load_report is not None
    adapted = gray.load_report.adapted
    assert adapted[0].startswith("adapted features.conv0.weight from 3 to 1 input channels (summed")
    assert adapted[1].startswith("initialised classifier.weight, classifier.bias afresh for 10 classes")
    assert "was: 1000 outputs on 1024 features" in adapted[1]


def test_adapting_to_more_channels_repeats_and_scales() -> None:
    weight = torch.randn(8, 3, 7, 7)
    five = adapt_input_conv(weight, 5)
    torch.testing.assert_close(five, torch.cat([weight, weight[:, :2]], 1) * 3 / 5)
    six = adapt_input_conv(weight, 6)  # two copies at half strength: an RGB image given twice, the same response
    torch.testing.assert_close(six.sum(1), weight.sum(1))


def test_adapt_drops_a_classifier_the_spec_has_not(densenet121_state: dict[str, torch.Tensor]) -> None:
    spec = Spec.model_validate({"name": "bb", "growth_rate": 32, "blocks": [6, 12, 24, 16], "num_classes": 0})
    state, report = load_weights(densenet121_state, compile_spec(spec), adapt=True)
    assert "classifier.weight" not in state
    assert report.adapted == ["dropped classifier.weight, classifier.bias (the spec has no classifier)"]


def test_without_adapt_a_mismatch_names_the_checkpoint_and_the_ways_on(
    densenet121_state: dict[str, torch.Tensor],
) -> None:
    gray = Spec.model_validate(
        {"name": "gray", "input": {"channels": 1}, "growth_rate": 32, "blocks": [6, 12, 24, 16], "num_classes": 10}
    )
    with pytest.raises(SpecError) as info:
        build_model(gray, weights=densenet121_state)
    messages = [p.message for p in info.value.problems]
    assert messages[:-1] == [
        "features.conv0.weight has shape [64, 3, 7, 7], the spec needs [64, 1, 7, 7]",
        "classifier.weight has shape [1000, 1024], the spec needs [10, 1024]",
        "classifier.bias has shape [1000], the spec needs [10]",
    ]
    assert messages[-1].startswith(
        "the checkpoint is a densenet121-shaped network: blocks 6-12-24-16, k 32 (3 input channels, 1000 classes); "
        "0 missing, 0 unexpected and 3 mis-shaped keys of "
    )
    assert "pass --adapt (adapt=True)" in messages[-1] and "densenet-spec infer CKPT -o spec.yaml" in messages[-1]


def test_another_architecture_is_named_with_the_infer_advice(tmp_path: Path) -> None:
    path = tmp_path / "d169.pth"
    torch.save(build_model("densenet169", seed=0).state_dict(), path)
    with pytest.raises(SpecError) as info:
        build_model("densenet121", weights=path)
    last = str(info.value.problems[-1])
    assert last.startswith(f"{path}: the checkpoint is a densenet169-shaped network: blocks 6-12-32-32, k 32")
    assert last.endswith(f"to use it, write the spec it fits with `densenet-spec infer {path} -o spec.yaml`")
    assert "--adapt" not in last


@pytest.mark.parametrize("adapt", [False, True])
def test_a_checkpoint_is_described_as_the_file_is_with_or_without_adapt(
    densenet121_state: dict[str, torch.Tensor], adapt: bool
) -> None:
    """Adapting fits the classifier to the spec: the summary must still name the file's network."""
    with pytest.raises(SpecError) as info:
        build_model("densenet169", weights=densenet121_state, adapt=adapt)
    last = info.value.problems[-1].message
    assert last.startswith("the checkpoint is a densenet121-shaped network: blocks 6-12-24-16, k 32")
    assert "(3 input channels, 1000 classes)" in last and "densenet-spec infer" in last


# ----------------------------------------------------------------------------- the command line


def test_cli_adapts_and_reports_and_refuses_without_adapt(tmp_path: Path) -> None:
    runner = CliRunner()
    path = tmp_path / "ckpt.pt"
    torch.save({f"module.{k}": v for k, v in build_model(_spec(), seed=0).state_dict().items()}, path)
    spec = tmp_path / "gray.yaml"
    spec.write_text("name: gray\ninput: {channels: 1, size: 32}\ngrowth_rate: 4\nblocks: [2, 3]\nnum_classes: 7\n")
    out = tmp_path / "gray.onnx"
    refused = runner.invoke(app, ["build", str(spec), "--to", "onnx", "--weights", str(path), "-o", str(out)])
    assert refused.exit_code == 1 and not out.exists()
    assert "Traceback" not in refused.output and "the checkpoint is a 2-D DenseNet" in refused.output
    done = runner.invoke(app, ["build", str(spec), "--to", "onnx", "--weights", str(path), "--adapt", "-o", str(out)])
    assert done.exit_code == 0, done.output
    assert f"{path}: read a torchvision layout (stripped the prefix 'module.')" in done.output
    assert f"{path}: adapted features.conv0.weight from 3 to 1 input channels" in done.output
    assert out.stat().st_size > 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--to", "onnx", "--adapt"], "--adapt fits a checkpoint to the spec: give it with --weights"),
        (["--to", "torch", "--adapt"], "--adapt does not apply to --to torch"),
    ],
)
def test_cli_adapt_usage_errors(args: list[str], message: str) -> None:
    result = CliRunner().invoke(app, ["build", "densenet-40-k12", *args, "-o", "-"])
    assert result.exit_code == 2 and message in result.output


def test_a_pickled_model_gets_the_advice_to_save_its_state_dict(tmp_path: Path) -> None:
    path = tmp_path / "whole.pt"
    torch.save(build_model(_spec(), seed=0), path)
    result = CliRunner().invoke(app, ["build", "densenet-40-k12", "--to", "onnx", "--weights", str(path), "-o", "-"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "holds a whole pickled model" in result.output and "torch.save(model.state_dict(), PATH)" in result.output


def test_heatmap_takes_adapt(tmp_path: Path) -> None:
    state = build_model(_spec(), seed=0).state_dict()
    ir = compile_spec(_spec(num_classes=3))
    dot = emit(ir, "heatmap", {"weights": state, "adapt": True, "format": "dot"})
    assert "digraph" in str(dot)


def test_adapt_without_a_seed_draws_the_classifier_from_torchs_generator(
    densenet121_state: dict[str, torch.Tensor],
) -> None:
    spec = Spec.model_validate({"name": "c10", "growth_rate": 32, "blocks": [6, 12, 24, 16], "num_classes": 10})
    weights = []
    for seed in (1, 2, 1):
        torch.manual_seed(seed)
        model = build_model(spec, weights=densenet121_state, adapt=True)
        weights.append(model.state_dict()["classifier.weight"])
    assert not torch.equal(weights[0], weights[1]) and torch.equal(weights[0], weights[2])
    seeded = build_model(spec, weights=densenet121_state, adapt=True, seed=0).state_dict()["classifier.weight"]
    assert torch.equal(
        seeded, build_model(spec, weights=densenet121_state, adapt=True, seed=0).state_dict()["classifier.weight"]
    )


# ----------------------------------------------------------------------------- optimize(ir, state)


def test_optimize_takes_checkpoints_of_any_layout() -> None:
    """``optimize(ir, state)`` (the weights for ``build --to torch --optimize`` source) reads what
    every other loader reads: a MONAI state_dict and a DDP-prefixed one fold to the same weights as
    the canonical state_dict (it raised a bare KeyError)."""
    from densenet_spec import as_ir, optimize

    monai = pytest.importorskip("monai.networks.nets")
    torch.manual_seed(0)
    reference = monai.DenseNet(
        spatial_dims=2, in_channels=1, out_channels=3, init_features=8, growth_rate=4, block_config=(2, 3)
    )
    spec = _spec(input={"channels": 1, "size": 32}, stem={"channels": 8}, num_classes=3)
    ir = as_ir(spec)
    canonical = build_model(spec, weights=reference.state_dict()).state_dict()
    expected = optimize(ir, canonical)[1]
    assert expected is not None
    ddp = {f"module.{k}": v for k, v in canonical.items()}
    for state in (reference.state_dict(), ddp):
        got = optimize(ir, state)[1]
        assert got is not None and got.keys() == expected.keys()
        for key, value in expected.items():
            torch.testing.assert_close(got[key], value, rtol=0, atol=0)


def test_optimize_names_what_does_not_fit() -> None:
    from densenet_spec import as_ir, optimize

    state = build_model(_spec()).state_dict()
    del state["features.conv0.weight"]
    with pytest.raises(SpecError, match=r"features\.conv0\.weight"):
        optimize(as_ir(_spec()), state)


def test_checkpoint_descriptions_read_as_english() -> None:
    from densenet_spec.interop import describe_checkpoint

    described = describe_checkpoint(_spec())
    assert "DenseNet with an imagenet stem" in described
    assert "DenseNet with a cifar stem" in describe_checkpoint(_spec(stem={"kind": "cifar"}))
    one = {"features.pool0.1.filt": torch.ones(1, 1, 3, 3), "features.conv0.weight": torch.ones(1)}
    assert "dropped 1 blur-pool filter (constants)" in canonical_state(one)[1].describe()
    two = one | {"features.transition1.pool.filt": torch.ones(1, 1, 3, 3)}
    assert "dropped 2 blur-pool filters (constants)" in canonical_state(two)[1].describe()
