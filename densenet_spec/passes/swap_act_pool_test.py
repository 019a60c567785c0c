from __future__ import annotations

import pytest
import torch

from densenet_spec import Spec, build_model, compile_spec, load_spec
from densenet_spec.ir import check_ir
from densenet_spec.passes import swap_act_pool

PRESETS = ["densenet121", "densenet169", "densenet-bc-100-k12"]


def _stem_order(ir_layers: list[str]) -> list[str]:
    return [name for name in ir_layers if name in ("features.conv0", "features.relu0", "features.pool0")]


@pytest.mark.parametrize("name", PRESETS)
def test_relu_moves_after_the_max_pool(name: str) -> None:
    ir = compile_spec(load_spec(name))
    result = swap_act_pool(ir)
    has_pool = any(layer.name == "features.pool0" for layer in ir.layers())
    assert result.modified == has_pool  # the CIFAR stem has no pool: nothing to do
    assert check_ir(result.ir) == []
    if has_pool:
        names = [layer.name for layer in result.ir.layers()]
        assert _stem_order(names) == ["features.conv0", "features.pool0", "features.relu0"]
        relu = result.ir.layer("features.relu0").ops[0]
        assert relu.in_size == result.ir.layer("features.pool0").out_size and relu.inplace
        assert result.ir.inputs("features.denseblock1.denselayer1") == ["features.relu0"]
        assert result.ir.info.passes == ("swap_act_pool",)
    assert result.ir.state_shapes() == ir.state_shapes()
    assert result.ir.macs == ir.macs and result.ir.params == ir.params


@pytest.mark.parametrize("act", ["relu", "relu6", {"kind": "leaky_relu", "negative_slope": 0.2}, "elu"])
def test_same_function_bit_for_bit(act: object) -> None:
    spec = Spec.model_validate({"name": "s", "growth_rate": 4, "blocks": [2, 2], "activation": act})
    ir = compile_spec(spec)
    swapped_ir = swap_act_pool(ir)
    assert swapped_ir.modified
    plain = build_model(ir, seed=0).eval()
    swapped = build_model(swapped_ir.ir, weights=plain.state_dict()).eval()
    x = torch.randn(2, 3, 37, 45)
    with torch.no_grad():
        assert torch.equal(swapped(x), plain(x))


@pytest.mark.parametrize("act", ["gelu", "silu", "mish", "hardswish", {"kind": "leaky_relu", "negative_slope": -0.5}])
def test_activations_that_dip_stay_before_the_pool(act: object) -> None:
    spec = Spec.model_validate({"name": "s", "growth_rate": 4, "blocks": [2, 2], "activation": act})
    result = swap_act_pool(compile_spec(spec))
    assert not result.modified


def test_blur_pool_stem_stays() -> None:
    """timm's anti-aliased stem pools with stride 1 and then blurs: the max pool does not shrink the
    map, and the blur (a linear filter) does not commute with the activation."""
    spec = Spec.model_validate({"name": "s", "growth_rate": 4, "blocks": [2, 2], "anti_alias": "stem"})
    assert not swap_act_pool(compile_spec(spec)).modified


def test_second_application_changes_nothing() -> None:
    once = swap_act_pool(compile_spec(load_spec("densenet121"))).ir
    again = swap_act_pool(once)
    assert not again.modified
    assert again.ir is once
