"""fold_batchnorm: every batch norm goes, into a conv, a clamp or an affine, exactly in eval mode."""

from __future__ import annotations

import pytest
import torch

from densenet_spec import build_model, compile_spec, load_spec
from densenet_spec.ir import check_ir
from densenet_spec.passes import fold_batchnorm, swap_transition_pool


def _randomise_norms(model: torch.nn.Module) -> None:
    generator = torch.Generator().manual_seed(0)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            c = module.num_features
            module.running_mean.copy_(torch.randn(c, generator=generator) * 0.3)
            module.running_var.copy_(torch.rand(c, generator=generator) + 0.5)
            module.weight.data.copy_(torch.randn(c, generator=generator))
            module.bias.data.copy_(torch.randn(c, generator=generator) * 0.2)


def test_each_batch_norm_goes_where_it_is_exact() -> None:
    ir = compile_spec(load_spec("densenet121"))
    result = fold_batchnorm(ir)
    assert result.modified and check_ir(result.ir) == []
    layer = result.ir.layer("features.denseblock2.denselayer5")
    # norm1-relu1 before the 1x1 conv: a clamp, its affine in conv1; norm2 after conv1: into conv1.
    assert [(op.name, op.kind) for op in layer.ops] == [
        ("norm1", "clamp"),
        ("conv1", "conv"),
        ("relu2", "act"),
        ("conv2", "conv"),
    ]
    assert layer.op("conv1").bias  # type: ignore[attr-defined]
    assert "features.norm0" not in result.ir.graph  # the stem's BN folded into conv0, its node spliced out
    assert result.ir.inputs("features.relu0") == ["features.conv0"]
    assert [op.kind for op in result.ir.layer("classifier").ops] == ["global_pool", "flatten", "linear"]
    assert result.ir.macs == ir.macs
    assert not [op for op in result.ir.ops() if op.kind == "norm"]


def test_before_a_3x3_conv_the_norm_becomes_an_affine() -> None:
    ir = compile_spec(load_spec("densenet-40-k12"))  # no bottleneck: BN-ReLU-conv3x3
    layer = fold_batchnorm(ir).ir.layer("features.denseblock1.denselayer1")
    assert [op.kind for op in layer.ops] == ["affine", "act", "conv"]


def test_a_second_application_changes_nothing() -> None:
    once = fold_batchnorm(compile_spec(load_spec("densenet-bc-100-k12"))).ir
    again = fold_batchnorm(once)
    assert not again.modified and again.ir is once


@pytest.mark.parametrize("name", ["densenet-bc-100-k12", "densenet121", "densenet-40-k12"])
def test_folded_weights_compute_the_same_function(name: str) -> None:
    ir = swap_transition_pool(compile_spec(load_spec(name))).ir
    model = build_model(ir, seed=0).eval()
    _randomise_norms(model)
    model.features.get_submodule("transition1.norm").weight.data[:3] = 0.0  # relu(bias): a constant
    result = fold_batchnorm(ir, model.state_dict())
    assert result.state is not None
    assert {k: tuple(v.shape) for k, v in result.state.items()} == result.ir.state_shapes()
    folded = build_model(result.ir, weights=result.state)
    x = torch.randn(2, 3, *ir.info.input_size)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x), atol=1e-4, rtol=1e-4)


def test_without_clamps_a_bn_relu_stays_an_affine_and_a_relu() -> None:
    from densenet_spec.passes import fold_batchnorm_no_clamps

    ir = compile_spec(load_spec("densenet121"))
    layer = fold_batchnorm_no_clamps(ir).ir.layer("features.denseblock1.denselayer1")
    assert [op.kind for op in layer.ops] == ["affine", "act", "conv", "act", "conv"]
