"""swap_transition_pool: same function, same tensors, 4x fewer transition MACs, IR still sound."""

from __future__ import annotations

import pytest
import torch

from densenet_spec import build_model, compile_spec, load_spec
from densenet_spec.ir import check_ir
from densenet_spec.passes import swap_transition_pool

PRESETS = ["densenet121", "densenet-bc-100-k12", "densenet-40-k12"]


@pytest.mark.parametrize("name", PRESETS)
def test_pool_moves_before_conv_and_macs_drop(name: str) -> None:
    ir = compile_spec(load_spec(name))
    result = swap_transition_pool(ir)
    assert result.modified
    assert check_ir(result.ir) == []
    assert result.ir.info.passes == ("swap_transition_pool",)
    for before, after in zip(ir.layers(), result.ir.layers(), strict=True):
        if before.kind == "transition":
            assert [op.kind for op in after.ops] == ["norm", "act", "pool", "conv"]
            assert after.op("conv").macs * 4 == before.op("conv").macs
            assert after.out_size == before.out_size and after.out_channels == before.out_channels
        else:
            assert after == before
    assert result.ir.state_shapes() == ir.state_shapes()
    assert ir.layer("features.transition1").ops[-1].kind == "pool"  # the input IR is untouched


@pytest.mark.parametrize("train", [False, True])
def test_same_function_in_training_and_inference(train: bool) -> None:
    ir = compile_spec(load_spec("densenet-bc-100-k12"))
    plain = build_model(ir, seed=0).train(train)
    swapped = build_model(swap_transition_pool(ir).ir, weights=plain.state_dict()).train(train)
    x = torch.randn(3, 3, 32, 32)
    torch.testing.assert_close(swapped(x), plain(x), atol=1e-5, rtol=1e-5)


def test_odd_sizes_commute_too() -> None:
    from densenet_spec import Spec

    spec = Spec.model_validate({"name": "odd", "growth_rate": 4, "blocks": [2, 2, 2], "input": {"size": [45, 37]}})
    ir = compile_spec(spec)
    plain = build_model(ir, seed=0).eval()
    swapped = build_model(swap_transition_pool(ir).ir, weights=plain.state_dict()).eval()
    x = torch.randn(2, 3, 45, 37)
    with torch.no_grad():
        torch.testing.assert_close(swapped(x), plain(x), atol=1e-5, rtol=1e-5)


def test_second_application_changes_nothing() -> None:
    once = swap_transition_pool(compile_spec(load_spec("densenet121"))).ir
    again = swap_transition_pool(once)
    assert not again.modified
    assert again.ir is once
