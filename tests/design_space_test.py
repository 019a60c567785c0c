"""The v1.1 design space: reference counts, MONAI parity, timm semantics, memory_efficient in N-d,
and random specs over the whole space with the torch model as the oracle of the IR."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from densenet_spec import Spec, SpecError, build_model, compile_spec, emit, load_spec
from densenet_spec.backends.torch_runtime import BlurPool

from .torch_module_test import assert_model_agrees_with_ir


def _spec(**fields: Any) -> Spec:
    return Spec.model_validate({"name": "t", "growth_rate": 32, "blocks": [6, 12, 24, 16], **fields})


# ----------------------------------------------------------------------------- reference counts

REFERENCE = {  # design.md, counted from MONAI 1.6 and timm 1.0
    "monai-3d": ({"input": {"channels": 1, "size": [64, 64, 64]}, "num_classes": 2}, 11_244_674, 5_362_681_856),
    "monai-1d": ({"input": {"channels": 1, "size": [1024]}, "num_classes": 5}, 5_524_613, 381_916_160),
    "monai-instance": ({"norm": "instance"}, 7_895_208, None),
    "timm-densenet264d": (
        {"stem": {"kind": "deep"}, "growth_rate": 48, "blocks": [6, 12, 64, 48]},
        72_736_216,
        13_470_266_880,
    ),
    "timm-densenetblur121d": ({"stem": {"kind": "deep"}, "anti_alias": "stem"}, 7_998_088, None),
    "timm-catavgmax": ({"head": {"pool": "catavgmax"}}, 9_002_856, None),
    "timm-num-classes-0": ({"num_classes": 0}, 6_953_856, None),
}


@pytest.mark.parametrize("case", sorted(REFERENCE))
def test_reference_counts(case: str) -> None:
    fields, params, macs = REFERENCE[case]
    ir = compile_spec(_spec(**fields))
    assert ir.params == params
    if macs is not None:
        assert ir.macs == macs


@pytest.mark.parametrize(
    ("preset", "params"),
    [
        ("densenet121-3d", 11_244_674),
        ("densenet121-1d", 5_524_613),
        ("densenet264d", 72_736_216),
        ("densenetblur121d", 7_998_088),
    ],
)
def test_new_presets_are_the_reference_networks(preset: str, params: int) -> None:
    ir = compile_spec(load_spec(preset), strict=True)
    assert ir.params == params
    assert "MONAI" in ir.info.description or "timm" in ir.info.description


def test_features_without_classifier() -> None:
    model = build_model(_spec(num_classes=0, input={"size": 64}), seed=0).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, 64, 64)).shape == (2, 1024)


# ----------------------------------------------------------------------------- MONAI parity


def _monai_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """MONAI's two differences from torchvision's names: `.layers.` in dense layers, `class_layers.out`."""
    out = {}
    for key, value in model.state_dict().items():
        key = key.replace(".layers.", ".").replace("class_layers.out.", "classifier.")
        out[key] = value
    return out


MONAI_CASES = [
    (1, "batch", "relu"),
    (2, "batch", "elu"),
    (3, "batch", "relu"),
    (2, "instance", "relu"),
    (3, "instance", "elu"),
    (1, "group", "elu"),
    (2, "group", "relu"),
]


@pytest.mark.parametrize(("rank", "norm", "act"), MONAI_CASES)
def test_outputs_equal_monai(rank: int, norm: str, act: str) -> None:
    monai = pytest.importorskip("monai.networks.nets")
    size = {1: [64], 2: [32, 32], 3: [16, 16, 16]}[rank]
    monai_norm: Any = ("group", {"num_groups": 2}) if norm == "group" else norm
    monai_act: Any = ("elu", {"alpha": 1.0}) if act == "elu" else ("relu", {"inplace": True})
    torch.manual_seed(0)
    reference = monai.DenseNet(
        spatial_dims=rank,
        in_channels=2,
        out_channels=3,
        init_features=8,
        growth_rate=4,
        block_config=(2, 3),
        bn_size=2,
        act=monai_act,
        norm=monai_norm,
    ).eval()
    for module in reference.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.2, 0.2)
    spec_norm: Any = {"kind": "group", "groups": 2} if norm == "group" else norm
    spec = Spec.model_validate(
        {
            "name": "monai",
            "input": {"channels": 2, "size": size},
            "stem": {"channels": 8},
            "growth_rate": 4,
            "blocks": [2, 3],
            "bottleneck_width": 2,
            "num_classes": 3,
            "norm": spec_norm,
            "activation": act,
        }
    )
    ours = build_model(spec, weights=_monai_state(reference)).eval()
    x = torch.randn(2, 2, *size)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference(x), atol=1e-5, rtol=1e-5)


# ----------------------------------------------------------------------------- timm semantics


def test_deep_stem_names_and_widths_are_timms() -> None:
    ir = compile_spec(load_spec("densenetblur121d"))
    stem = [(layer.name, layer.out_channels) for layer in ir.stages()["stem"]]
    assert stem[:9] == [
        ("features.conv0", 32),
        ("features.norm0", 32),
        ("features.relu0", 32),
        ("features.conv1", 32),
        ("features.norm1", 32),
        ("features.relu1", 32),
        ("features.conv2", 64),
        ("features.norm2", 64),
        ("features.relu2", 64),
    ]
    assert ir.layer("features.conv0").ops[0].stride == (2, 2)  # type: ignore[attr-defined]
    keys = build_model(ir).state_dict().keys()
    assert not [k for k in keys if k.startswith("features.pool0")]  # timm's blur filter is not persistent
    assert [op.kind for op in ir.layer("features.pool0").ops] == ["pool", "blur"]


def test_blur_filter_and_reflect_padding_are_timms() -> None:
    blur = BlurPool(channels=2, rank=2, stride=2)
    expected = torch.tensor([[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]]) / 16
    torch.testing.assert_close(blur.filt[0, 0], expected)
    assert "filt" not in blur.state_dict()
    x = torch.arange(2 * 5 * 5, dtype=torch.float32).reshape(1, 2, 5, 5)
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1), mode="reflect")
    by_hand = torch.stack(
        [
            torch.stack([(padded[0, c, i : i + 3, j : j + 3] * expected).sum() for j in range(0, 5, 2)])
            for c in range(2)
            for i in range(0, 5, 2)
        ]
    ).reshape(1, 2, 3, 3)
    torch.testing.assert_close(blur(x), by_hand)


def test_anti_alias_all_blurs_the_transitions() -> None:
    ir = compile_spec(_spec(stem={"kind": "deep"}, anti_alias="all", input={"size": 64}))
    assert [op.kind for op in ir.layer("features.transition1").ops] == ["norm", "act", "conv", "blur"]


# ----------------------------------------------------------------------------- checks and messages


def test_group_norm_must_divide_every_width() -> None:
    with pytest.raises(SpecError, match="do not divide"):
        compile_spec(_spec(norm={"kind": "group", "groups": 7}, input={"size": 64}))


def test_instance_norm_needs_two_positions() -> None:
    with pytest.raises(SpecError, match="instance norm needs more than one position per channel"):
        compile_spec(_spec(norm="instance", blocks=[1, 1, 1], input={"channels": 1, "size": [24, 24, 24]}))


@pytest.mark.parametrize("size", [[4], [8], [4, 4], [8, 8], [12, 12]])
def test_smallest_input_suggested_for_instance_norm_works(size: list[int]) -> None:
    """The size a message suggests compiles, one less on every axis does not (one message, not two)."""
    spec = _spec(norm="instance", stem="cifar", blocks=[1, 1, 1, 1], input={"size": size})
    with pytest.raises(SpecError) as caught:
        compile_spec(spec)
    assert len(caught.value.problems) == 1
    suggested = [int(n) for n in caught.value.problems[0].message.rsplit(" ", 1)[-1].strip(")[]").split("x")]
    compile_spec(_spec(norm="instance", stem="cifar", blocks=[1, 1, 1, 1], input={"size": suggested}))
    smaller = _spec(norm="instance", stem="cifar", blocks=[1, 1, 1, 1], input={"size": [n - 1 for n in suggested]})
    with pytest.raises(SpecError):
        compile_spec(smaller)


@pytest.mark.parametrize(("written", "says_default"), [("", True), ("compression: 0.5\n", False)])
def test_compression_warning_says_when_the_value_is_the_default(
    write_spec: Any, written: str, says_default: bool
) -> None:
    path = write_spec(f"name: x\ngrowth_rate: 4\nblocks: [1, 1, 1, 1]\nstem: cifar\ninput: {{size: 32}}\n{written}")
    (warning,) = compile_spec(load_spec(path)).warnings
    assert ("(the default compression)" in warning.message) is says_default
    assert (warning.location is not None and warning.location.line == 6) is not says_default


def test_activation_parameter_of_another_kind_is_refused(write_spec: Any) -> None:
    path = write_spec("name: x\ngrowth_rate: 4\nblocks: [1]\nactivation: {kind: relu, negative_slope: 0.1}\n")
    with pytest.raises(SpecError, match="negative_slope applies to leaky_relu only"):
        load_spec(path)


@pytest.mark.parametrize(("size", "smallest"), [([8], r"\[29\]"), ([8, 8], "29x29"), ([4, 4, 4], "29x29x29")])
def test_smallest_input_in_every_rank(size: list[int], smallest: str) -> None:
    with pytest.raises(SpecError, match=f"the smallest input that works is {smallest}$"):
        compile_spec(_spec(blocks=[1, 1, 1, 1], input={"size": size}))


def test_summary_sizes_of_any_rank() -> None:
    from densenet_spec.summary import stage_rows

    rows = stage_rows(compile_spec(load_spec("densenet121-3d")))
    assert rows[0][1] == "24x24x24"


# ----------------------------------------------------------------------------- memory_efficient in N-d


@pytest.mark.parametrize(
    "fields",
    [
        {"input": {"channels": 1, "size": [12, 12, 12]}, "stem": "cifar"},
        {"input": {"channels": 1, "size": [64]}, "activation": "gelu", "norm": {"kind": "group", "groups": 2}},
        {"input": {"size": 32}, "stem": "cifar", "activation": "silu", "norm": "instance"},
    ],
)
def test_memory_efficient_gradients_equal_plain(fields: dict[str, Any]) -> None:
    spec = Spec.model_validate({"name": "t", "growth_rate": 4, "blocks": [3, 3], "num_classes": 3, **fields})
    plain = build_model(spec, seed=0).train()
    lean = build_model(spec, seed=0, memory_efficient=True).train()
    ir = compile_spec(spec)
    x = torch.randn(2, ir.info.input_channels, *ir.info.input_size)
    for model in (plain, lean):
        model(x).square().mean().backward()
    for (name, a), (_, b) in zip(plain.named_parameters(), lean.named_parameters(), strict=True):
        assert a.grad is not None and b.grad is not None
        torch.testing.assert_close(a.grad, b.grad, atol=1e-6, rtol=1e-5, msg=name)
    for (name, a), (_, b) in zip(plain.named_buffers(), lean.named_buffers(), strict=True):
        torch.testing.assert_close(a, b, msg=name)  # running statistics moved once, alike


# ----------------------------------------------------------------------------- random specs


@st.composite
def design_specs(draw: st.DrawFn) -> Spec:
    rank = draw(st.sampled_from([1, 2, 3]))
    stem = draw(st.sampled_from(["imagenet", "cifar", "deep"]))
    k = draw(st.sampled_from([2, 4, 6]))
    norm: Any = draw(st.sampled_from(["batch", "instance", "none", {"kind": "group", "groups": 1}]))
    blocks: list[Any] = draw(
        st.lists(
            st.one_of(
                st.integers(1, 3),
                st.fixed_dictionaries(
                    {"layers": st.integers(1, 3)},
                    optional={
                        "growth_rate": st.sampled_from([2, 4]),
                        "bottleneck_width": st.sampled_from([None, 1, 2]),
                        "dropout": st.sampled_from([0.0, 0.2]),
                    },
                ),
            ),
            min_size=1,
            max_size=3,
        )
    )
    # Big enough that every map keeps two positions (instance norm needs them) after 2 transitions.
    side = {1: 48, 2: 24, 3: 12}[rank] if stem == "cifar" else {1: 96, 2: 48, 3: 32}[rank]
    return Spec.model_validate(
        {
            "name": "random",
            "input": {"channels": draw(st.integers(1, 3)), "size": [side] * rank},
            "stem": {"kind": stem, **({"channels": 2 * k} if stem != "deep" else {"mid_channels": [k, 2 * k]})},
            "growth_rate": k,
            "blocks": blocks,
            "bottleneck_width": draw(st.sampled_from([None, 2])),
            "compression": draw(st.sampled_from([0.5, 1.0])),
            "activation": draw(st.sampled_from(["relu", "gelu", "silu", "hardswish", "mish", "elu"])),
            "norm": norm,
            "anti_alias": draw(st.sampled_from(["none", "stem", "all"])) if stem != "cifar" else "none",
            "head": {"pool": draw(st.sampled_from(["avg", "max", "avgmax", "catavgmax"]))},
            "num_classes": draw(st.integers(0, 4)),
        }
    )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(design_specs())
def test_random_design_specs_agree_with_the_torch_model(spec: Spec) -> None:
    assert_model_agrees_with_ir(compile_spec(spec), batch=2)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(design_specs(), st.booleans())
def test_random_design_specs_round_trip_through_onnx(spec: Spec, optimize: bool) -> None:
    import onnxruntime as ort

    ir = compile_spec(spec)
    model = build_model(ir, seed=0).eval()
    x = torch.randn(2, ir.info.input_channels, *ir.info.input_size)
    data = emit(ir, "onnx", {"weights": model.state_dict(), "optimize": optimize})
    (got,) = ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, {"input": x.numpy()})
    with torch.no_grad():
        np.testing.assert_allclose(got, model(x).numpy(), atol=1e-4, rtol=1e-4)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(design_specs(), st.integers(min_value=1, max_value=3))
def test_random_design_specs_optimised_a_few_samples_a_pass(spec: Spec, samples: int) -> None:
    """optimize_for_inference with each dense block taking ``samples`` samples a pass (the last
    pass shorter) agrees with the eager model."""
    from densenet_spec import optimize_for_inference
    from densenet_spec.backends import torch_runtime

    ir = compile_spec(spec)
    model = build_model(ir, seed=0).eval()
    fast = optimize_for_inference(model)
    x = torch.randn(4, ir.info.input_channels, *ir.info.input_size)
    blocks = [m for m in fast.modules() if isinstance(m, torch_runtime.DenseBlock)]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(torch_runtime.DenseBlock, "samples_per_pass", lambda self, x: samples)
        with torch.no_grad():
            got = fast(x)
    with torch.no_grad():
        torch.testing.assert_close(got, model(x), rtol=1e-4, atol=1e-4)
    assert all(block in torch_runtime._KEPT for block in blocks if block.buffered)  # the passes ran


@pytest.mark.parametrize("memory_efficient", [False, True])
def test_bf16_autocast_trains_across_the_design_space(memory_efficient: bool) -> None:
    spec = Spec.model_validate(
        {
            "name": "amp",
            "growth_rate": 4,
            "blocks": [2, 2],
            "input": {"size": 64},
            "stem": {"kind": "deep"},
            "anti_alias": "all",
            "activation": "silu",
            "norm": {"kind": "group", "groups": 2},
            "head": {"pool": "catavgmax"},
        }
    )
    model = build_model(spec, seed=0, memory_efficient=memory_efficient).train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(torch.randn(2, 3, 64, 64))
    assert out.dtype == torch.bfloat16
    out.float().square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
