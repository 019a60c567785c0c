"""Backbone features (timm's features_only), forward_features/forward_head, and hooks that work."""

from __future__ import annotations

import copy
import pickle
import re
from typing import Any

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from densenet_spec import Spec, SpecError, build_model, compile_spec, emit, export_onnx, load_spec
from densenet_spec.backends.taps import feature_taps
from densenet_spec.cli import app

TIMM_DENSENET121 = [
    {"num_chs": 64, "reduction": 2, "module": "features.norm0"},
    {"num_chs": 256, "reduction": 4, "module": "features.denseblock1"},
    {"num_chs": 512, "reduction": 8, "module": "features.denseblock2"},
    {"num_chs": 1024, "reduction": 16, "module": "features.denseblock3"},
    {"num_chs": 1024, "reduction": 32, "module": "features.norm5"},
]


def _spec(**fields: Any) -> Spec:
    base = {"name": "t", "input": {"size": 32}, "growth_rate": 4, "blocks": [2, 2, 2], "num_classes": 3}
    return Spec.model_validate(base | fields)


def test_densenet121_features_are_timms() -> None:
    backbone = build_model("densenet121", features_only=True, seed=0).eval()
    assert list(backbone.feature_info) == TIMM_DENSENET121
    with torch.no_grad():
        maps = backbone(torch.randn(1, 3, 224, 224))
    expected = [(1, 64, 112, 112), (1, 256, 56, 56), (1, 512, 28, 28), (1, 1024, 14, 14), (1, 1024, 7, 7)]
    assert [tuple(m.shape) for m in maps] == expected


def test_densenet264d_features_are_timms() -> None:
    taps = feature_taps(compile_spec(load_spec("densenet264d")))
    assert [t.channels for t in taps] == [96, 384, 768, 3456, 4032]
    assert [t.reduction for t in taps] == [2, 4, 8, 16, 32]
    assert [t.module for t in taps] == [
        "features.norm2",
        *(f"features.denseblock{i}" for i in (1, 2, 3)),
        "features.norm5",
    ]


def test_out_indices_choose_taps_and_the_rest_is_left_out() -> None:
    backbone = build_model(_spec(), features_only=True, out_indices=(-1, 1), seed=0)
    assert backbone.feature_info.module_name() == ["features.denseblock1", "features.norm5"]
    partial = build_model(_spec(), features_only=True, out_indices=[0, 2], seed=0)
    assert partial.feature_info.channels() == [8, 16]
    assert "denseblock3" not in dict(partial.features.named_children())
    with pytest.raises(ValueError, match="out_indices: 5 is out of range; this network has 4 taps"):
        build_model(_spec(), features_only=True, out_indices=[5])
    with pytest.raises(ValueError, match=r"out_indices is empty; give at least one tap of 0\.\.3, or None"):
        build_model(_spec(), features_only=True, out_indices=())
    with pytest.raises(ValueError, match="out_indices applies to features_only=True"):
        build_model(_spec(), out_indices=[1])


def test_taps_equal_the_whole_models_maps_and_forward_head() -> None:
    model = build_model(_spec(), seed=0).eval()
    backbone = build_model(_spec(), features_only=True, weights=model.state_dict()).eval()
    seen: dict[str, torch.Tensor] = {}
    for name in ("features.relu0", "features.denseblock1", "features.denseblock2", "features.norm5"):
        model.get_submodule(name).register_forward_hook(lambda _m, _i, out, n=name: seen.__setitem__(n, out.clone()))
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        logits = model(x)
        maps = backbone(x)
        features = model.forward_features(x)
    torch.testing.assert_close(maps[0], seen["features.relu0"])
    torch.testing.assert_close(maps[1], seen["features.denseblock1"])
    torch.testing.assert_close(maps[3], torch.relu(seen["features.norm5"]))
    torch.testing.assert_close(features, seen["features.norm5"])
    with torch.no_grad():
        torch.testing.assert_close(model.forward_head(features), logits)
        assert model.forward_head(features, pre_logits=True).shape == (2, 16)


@pytest.mark.parametrize(("size", "stem"), [([64], "imagenet"), ([16, 16, 16], "imagenet"), ([16, 16], "cifar")])
def test_features_in_every_rank_with_memory_efficient_gradients(size: list[int], stem: str) -> None:
    spec = _spec(input={"size": size, "channels": 2}, stem=stem)
    # float64: the last map is 1x1x1 at batch 2, where batch norm amplifies float32 rounding
    plain = build_model(spec, features_only=True, seed=0).double().train()
    lean = build_model(spec, features_only=True, seed=0, memory_efficient=True).double().train()
    rank_sizes = [tuple(s // t.reduction for s in size) for t in plain.taps]
    x = torch.randn(2, 2, *size, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    for model in (plain, lean):
        maps = model(x)
        assert [tuple(m.shape[2:]) for m in maps] == rank_sizes
        assert [m.shape[1] for m in maps] == plain.feature_info.channels()
        sum(m.square().mean() for m in maps).backward()  # type: ignore[union-attr]
    for (name, a), (_, b) in zip(plain.named_parameters(), lean.named_parameters(), strict=True):
        assert a.grad is not None and b.grad is not None
        torch.testing.assert_close(a.grad, b.grad, atol=1e-6, rtol=1e-5, msg=name)


# ----------------------------------------------------------------------------- hooks


HOOKED = ["features", "features.norm0", "features.denseblock1", "features.denseblock2", "features.norm5"]


@pytest.mark.parametrize("memory_efficient", [False, True])
@pytest.mark.parametrize("stem", ["imagenet", "deep"])
def test_full_backward_hooks_on_features_and_every_tap(stem: str, memory_efficient: bool) -> None:
    model = build_model(_spec(stem=stem), seed=0, memory_efficient=memory_efficient).train()
    stem_norm = "features.norm2" if stem == "deep" else "features.norm0"
    grads: dict[str, tuple[int, ...]] = {}
    for name in [n if n != "features.norm0" else stem_norm for n in HOOKED]:
        model.get_submodule(name).register_full_backward_hook(
            lambda _m, _gi, go, n=name: grads.__setitem__(n, tuple(go[0].shape))
        )
    model(torch.randn(2, 3, 32, 32, requires_grad=True)).sum().backward()
    assert set(grads) == {n if n != "features.norm0" else stem_norm for n in HOOKED}
    assert grads["features.norm5"] == (2, 16, 2, 2)


def test_grad_cam_on_norm5() -> None:
    model = build_model("densenet121", seed=0).eval()
    saved: dict[str, torch.Tensor] = {}
    norm5 = model.features.norm5
    norm5.register_forward_hook(lambda _m, _i, out: saved.__setitem__("act", out.detach()))
    norm5.register_full_backward_hook(lambda _m, _gi, go: saved.__setitem__("grad", go[0].detach()))
    logits = model(torch.randn(1, 3, 64, 64))
    logits[0, logits.argmax()].backward()
    weights = saved["grad"].mean((2, 3), keepdim=True)
    cam = torch.relu((weights * saved["act"]).sum(1))
    assert cam.shape == (1, 2, 2) and saved["grad"].abs().sum() > 0


def test_backward_hooks_on_the_backbone_taps() -> None:
    backbone = build_model(_spec(), features_only=True, seed=0).train()
    called = []
    for info in backbone.feature_info:
        module = backbone.get_submodule(str(info["module"]))
        module.register_full_backward_hook(lambda _m, _gi, _go, n=info["module"]: called.append(n))
    sum(m.sum() for m in backbone(torch.randn(2, 3, 32, 32))).backward()  # type: ignore[union-attr]
    assert sorted(map(str, called)) == sorted(backbone.feature_info.module_name())


# ----------------------------------------------------------------------------- ONNX


@pytest.mark.parametrize("optimize", [False, True])
@pytest.mark.parametrize("fields", [{}, {"stem": "deep", "anti_alias": "all"}, {"norm": "none", "stem": "cifar"}])
def test_onnx_backbone_has_one_output_per_tap(fields: dict[str, Any], optimize: bool) -> None:
    import onnxruntime as ort

    spec = _spec(**fields)
    ir = compile_spec(spec)
    model = build_model(spec, seed=0)
    for module in model.modules():  # statistics that make BN folding matter
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_var.uniform_(0.5, 1.5)
            module.running_mean.uniform_(-0.3, 0.3)
    state = model.state_dict()
    backbone = build_model(spec, features_only=True, weights=state).eval()
    data = emit(ir, "onnx", {"weights": state, "features": (0, 2, 3), "optimize": optimize})
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["feature0", "feature2", "feature3"]
    x = torch.randn(2, 3, 32, 32)
    got = session.run(None, {"input": x.numpy()})
    with torch.no_grad():
        expected = backbone(x)
    for index, out in zip((0, 2, 3), got, strict=True):
        np.testing.assert_allclose(out, expected[index].numpy(), atol=1e-5, rtol=1e-5)


def test_onnx_backbone_of_one_block_tap_only() -> None:
    import onnxruntime as ort

    spec = _spec()
    state = build_model(spec, seed=0).state_dict()
    data = emit(compile_spec(spec), "onnx", {"weights": state, "features": (1,)})
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {"input": np.zeros((1, 3, 32, 32), np.float32)})
    assert out.shape == (1, 16, 8, 8)


def test_cli_features_option(tmp_path: Any) -> None:
    runner = CliRunner()
    out = tmp_path / "bb.onnx"
    result = runner.invoke(app, ["build", "densenet-40-k12", "--to", "onnx", "--features", "all", "-o", str(out)])
    assert result.exit_code == 0, result.output
    bad = runner.invoke(app, ["build", "densenet-40-k12", "--to", "onnx", "--features", "9", "-o", str(out)])
    assert bad.exit_code == 2 and "expected 'all' or tap indices among 0: features.conv0" in bad.output
    wrong = runner.invoke(app, ["build", "densenet-40-k12", "--to", "json", "--features", "1", "-o", "-"])
    assert wrong.exit_code == 2


def test_feature_info_has_timms_accessors() -> None:
    """idx counts among all the taps, as timm's FeatureInfo; None means the taps returned."""
    info = build_model(_spec(), features_only=True, out_indices=(1, 3), seed=0).feature_info
    assert info.out_indices == (1, 3)
    assert info.channels() == [16, 16] and info.reduction() == [4, 16]
    assert info.channels(0) == 8 and info.reduction(-1) == 16 and info.reduction([0, 2]) == [2, 8]
    assert info.module_name(3) == "features.norm5"
    assert info.get("reduction") == info.reduction()
    assert info.get_dicts() == list(info)
    assert info.get_dicts(keys=["reduction"], idx=2) == {"reduction": 8}
    assert info.get_dicts(keys=("module",)) == [{"module": "features.denseblock1"}, {"module": "features.norm5"}]
    assert copy.deepcopy(info).reduction(2) == 8 and pickle.loads(pickle.dumps(info)).out_indices == (1, 3)


@pytest.mark.parametrize("out_indices", [None, (1, 2), (0,)])
def test_a_backbones_own_state_dict_loads_back(out_indices: tuple[int, ...] | None) -> None:
    """A backbone's state_dict (no classifier; no modules after its last tap) loads into the same
    backbone, which then computes the same maps; anything missing from it is still named."""
    first = build_model(_spec(), features_only=True, out_indices=out_indices, seed=1).eval()
    again = build_model(_spec(), features_only=True, out_indices=out_indices, weights=first.state_dict())
    assert again.load_report is not None and again.load_report.backbone
    assert "backbone's weights only" in again.load_report.lines()[0]
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        for a, b in zip(first(x), again.eval()(x), strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
    cut = f"the checkpoint is this network's backbone, cut after tap {max(out_indices or (3,))} (no classifier)"
    if out_indices is not None:  # too few weights for all the taps
        with pytest.raises(SpecError, match=re.escape(cut)):
            build_model(_spec(), features_only=True, weights=first.state_dict())
    with pytest.raises(SpecError, match=re.escape(cut)):  # the whole model needs it all
        build_model(_spec(), weights=first.state_dict())


def test_adapt_without_weights_is_refused() -> None:
    with pytest.raises(ValueError, match="adapt=True fits a checkpoint to the spec: give it with weights="):
        build_model(_spec(), adapt=True)


def test_a_backbone_cut_at_a_later_tap_serves_the_earlier_ones() -> None:
    """Its extra blocks are a deeper backbone's, not a mismatch: out_indices=(1,) takes what it needs."""
    deep = build_model(_spec(), features_only=True, out_indices=(1, 2), seed=1).eval()
    shallow = build_model(_spec(), features_only=True, out_indices=(1,), weights=deep.state_dict()).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(shallow(x)[0], deep(x)[0], rtol=0, atol=0)
    state = deep.state_dict() | {"features.conv9.weight": torch.zeros(1)}  # not the network's at all
    with pytest.raises(SpecError, match=r"unexpected key features\.conv9\.weight"):
        build_model(_spec(), features_only=True, out_indices=(1,), weights=state)


@pytest.mark.parametrize("optimize", [False, True])
def test_the_onnx_backbone_takes_a_backbones_own_weights(tmp_path: Any, optimize: bool) -> None:
    """``--features`` exports with the weights that build_model(features_only=True) takes."""
    ort = pytest.importorskip("onnxruntime")
    backbone = build_model(_spec(), features_only=True, out_indices=(1, 2), seed=2).eval()
    path = tmp_path / "b.onnx"
    export_onnx(_spec(), path, weights=backbone.state_dict(), features=(1, 2), optimize=optimize)
    x = torch.randn(2, 3, 32, 32)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {"input": x.numpy()})
    with torch.no_grad():
        for ours, theirs in zip(backbone(x), got, strict=True):
            np.testing.assert_allclose(theirs, ours.numpy(), rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match=r"^features: 7 is out of range"):
        export_onnx(_spec(), tmp_path / "c.onnx", weights=backbone.state_dict(), features=(7,))


@pytest.mark.parametrize("out_indices", [2, "12", (True,), (1.0,)])
def test_out_indices_of_another_type_are_named(out_indices: Any) -> None:
    with pytest.raises(TypeError, match="out_indices takes"):
        build_model(_spec(), features_only=True, out_indices=out_indices)


def test_out_indices_as_numpy_integers_or_a_generator() -> None:
    backbone = build_model(_spec(), features_only=True, out_indices=np.array([1, 3]), seed=0)
    assert backbone.feature_info.out_indices == (1, 3)
    state = build_model(_spec(), seed=0).state_dict()
    backbone = build_model(_spec(), features_only=True, out_indices=(i for i in (1, 2)), weights=state)
    assert backbone.feature_info.out_indices == (1, 2)
    with pytest.raises(TypeError, match="out_indices takes a sequence"):
        build_model(_spec(), features_only=True, out_indices=np.array(1))


def test_a_deeper_backbones_extra_tensors_are_still_checked() -> None:
    """The blocks past the taps asked for are dropped, but a tensor there of another shape than
    the network's is still refused (it said nothing)."""
    state = build_model(_spec(), features_only=True, out_indices=(1, 2), seed=1).state_dict()
    state["features.denseblock2.denselayer1.conv1.weight"] = torch.zeros(3)
    with pytest.raises(SpecError, match=r"features\.denseblock2\.denselayer1\.conv1\.weight has shape \[3\]"):
        build_model(_spec(), features_only=True, out_indices=(1,), weights=state)


def test_adapting_a_backbone_reports_no_classifier() -> None:
    """A backbone has no classifier, so --adapt's report does not speak of one."""
    state = build_model(_spec(), features_only=True, out_indices=(1,), seed=1).state_dict()
    gray = _spec(input={"channels": 1, "size": 32})
    backbone = build_model(gray, features_only=True, out_indices=(1,), weights=state, adapt=True)
    assert backbone.load_report is not None
    lines = backbone.load_report.lines()
    assert any("conv0" in line for line in lines) and not any("classifier" in line for line in lines)


def test_a_backbone_checkpoint_for_the_whole_network_says_what_it_is() -> None:
    state = build_model(_spec(), features_only=True, out_indices=(0, 1), seed=1).state_dict()
    with pytest.raises(SpecError) as info:
        build_model(_spec(), weights=state)
    last = info.value.problems[-1].message
    assert last.startswith("the checkpoint is this network's backbone, cut after tap 1 (no classifier)")
    assert last.endswith("use it with features_only=True and out_indices up to 1, or --to onnx --features 0,1")
