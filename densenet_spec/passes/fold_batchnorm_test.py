"""fold_batchnorm: the bottleneck's BN folds into conv1, exactly in eval mode."""

from __future__ import annotations

import pytest
import torch

from densenet_spec import build_model, compile_spec, load_spec
from densenet_spec.compiler import check_ir
from densenet_spec.passes import fold_batchnorm


def _randomise_norms(model: torch.nn.Module) -> None:
    generator = torch.Generator().manual_seed(0)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            c = module.num_features
            module.running_mean.copy_(torch.randn(c, generator=generator) * 0.3)
            module.running_var.copy_(torch.rand(c, generator=generator) + 0.5)
            module.weight.data.copy_(torch.randn(c, generator=generator))
            module.bias.data.copy_(torch.randn(c, generator=generator) * 0.2)


def test_norm2_is_gone_and_conv1_has_a_bias() -> None:
    ir = compile_spec(load_spec("densenet121"))
    result = fold_batchnorm(ir)
    assert result.modified
    assert check_ir(result.ir) == []
    layer = result.ir.layer("features.denseblock2.denselayer5")
    assert [op.name for op in layer.ops] == ["norm1", "relu1", "conv1", "relu2", "conv2"]
    assert layer.op("conv1").bias
    dense_layers = sum(len(block) for block in ir.blocks())
    assert ir.params - result.ir.params == dense_layers * 4 * 32  # each loses 2 x 128 BN params, gains 128 biases
    assert result.ir.macs == ir.macs


def test_plain_densenet_has_nothing_to_fold() -> None:
    result = fold_batchnorm(compile_spec(load_spec("densenet-40-k12")))
    assert not result.modified


@pytest.mark.parametrize("name", ["densenet-bc-100-k12", "densenet121"])
def test_folded_weights_compute_the_same_function(name: str) -> None:
    ir = compile_spec(load_spec(name))
    model = build_model(ir, seed=0).eval()
    _randomise_norms(model)
    folded_ir = fold_batchnorm(ir).ir
    state = fold_batchnorm.rewrite_state(model.state_dict(), ir)
    assert {k: tuple(v.shape) for k, v in state.items()} == folded_ir.state_shapes()
    folded = build_model(folded_ir).eval()
    folded.load_state_dict(state, strict=True)
    size = ir.info.input_size
    x = torch.randn(2, 3, *size)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x), atol=1e-4, rtol=1e-4)
