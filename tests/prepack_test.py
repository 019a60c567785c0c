"""optimize_for_inference's prepacked convolutions: the same numbers, packed once, repacked when
the weights change, and a model that still saves, copies and pickles."""

from __future__ import annotations

import copy
import io
import pickle

import pytest
import torch
from torch import nn

from densenet_spec import build_model, optimize_for_inference
from densenet_spec.backends.torch_prepack import PackedConv2d, available

pytestmark = pytest.mark.skipif(not available(), reason="this torch has no oneDNN prepacked convolution")


def _unpacked(model: nn.Module) -> nn.Module:
    plain = copy.deepcopy(model)
    for module in plain.modules():
        if type(module) is PackedConv2d:
            module.__class__ = nn.Conv2d
    return plain


def test_every_2d_conv_is_packed_and_computes_the_same() -> None:
    fast = optimize_for_inference(build_model("densenet-bc-100-k12", seed=0).eval())
    convs = [m for m in fast.modules() if isinstance(m, nn.Conv2d)]
    assert convs and all(type(m) is PackedConv2d for m in convs)
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        out = fast(x)
        torch.testing.assert_close(out, _unpacked(fast)(x), rtol=1e-5, atol=1e-5)
    assert all(m._packs and all(t.is_mkldnn for t in m._packs.values()) for m in convs)


def test_packed_once_and_again_when_the_weights_change() -> None:
    fast = optimize_for_inference(build_model("densenet-bc-100-k12", seed=0).eval())
    other = optimize_for_inference(build_model("densenet-bc-100-k12", seed=1).eval())
    conv = fast.features.conv0
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        fast(x)
        packed = conv._packs[(32, 32)]
        fast(x)
        assert conv._packs == {(32, 32): packed}  # not reordered on every call
        fast.load_state_dict(other.state_dict())  # copies into the same parameters
        torch.testing.assert_close(fast(x), other(x), rtol=1e-5, atol=1e-5)
    assert conv._packs[(32, 32)] is not packed


def test_a_copy_for_each_spatial_size_up_to_a_few() -> None:
    """A warm-up at 32x32 then calls at 48x48 (and another batch): a copy for each size, made once;
    past max_packs sizes the oldest goes."""
    fast = optimize_for_inference(build_model("densenet-bc-100-k12", seed=0).eval())
    plain = _unpacked(fast)
    conv = fast.features.conv0
    with torch.no_grad():
        fast(torch.randn(1, 3, 32, 32))
        small = conv._packs[(32, 32)]
        for batch in (2, 5):
            x = torch.randn(batch, 3, 48, 48)
            torch.testing.assert_close(fast(x), plain(x), rtol=1e-5, atol=1e-5)
        assert list(conv._packs) == [(32, 32), (48, 48)] and conv._packs[(32, 32)] is small
        large = conv._packs[(48, 48)]
        fast(torch.randn(2, 3, 48, 48))
        assert conv._packs[(48, 48)] is large  # made once for the size, whatever the batch
        for size in (40, 56, 64):
            fast(torch.randn(1, 3, size, size))
    assert list(conv._packs) == [(48, 48), (40, 40), (56, 56), (64, 64)]
    main = conv._packs[(40, 40)]
    with torch.no_grad():  # a size used often stays among occasional others, packed once
        for size in (40, 32, 40, 72, 40, 80, 40, 88):
            fast(torch.randn(1, 3, size, size))
    assert conv._packs[(40, 40)] is main and len(conv._packs) == PackedConv2d.max_packs


def test_state_dict_deepcopy_and_pickle_carry_no_packed_copy() -> None:
    fast = optimize_for_inference(build_model("densenet-bc-100-k12", seed=0).eval())
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = fast(x)
    state = fast.state_dict()
    assert not any(t.is_mkldnn for t in state.values())
    assert set(state) == set(_unpacked(fast).state_dict())  # no keys of its own
    buffer = io.BytesIO()
    torch.save(state, buffer)
    for twin in (copy.deepcopy(fast), pickle.loads(pickle.dumps(fast))):
        assert twin.features.conv0._packs is None
        with torch.no_grad():
            torch.testing.assert_close(twin(x), expected, rtol=0, atol=0)


def test_plain_convolution_where_packing_does_not_apply() -> None:
    fast = optimize_for_inference(build_model("densenet-bc-100-k12", seed=0).eval())
    x = torch.randn(2, 3, 32, 32, requires_grad=True)  # autograd through the input: a saliency map
    out = fast(x)
    out.sum().backward()
    assert x.grad is not None and fast.features.conv0._packs is None
    with torch.no_grad():
        contiguous = fast.features.conv0(torch.randn(2, 3, 32, 32))  # not channels_last: plain path
    assert contiguous.shape == (2, 24, 32, 32) and fast.features.conv0._packs is None


@pytest.mark.parametrize("name", ["densenet-bc-100-k12", "densenet-40-k12"])
def test_torch_compile_fullgraph_runs_the_plain_convolution(name: str) -> None:
    """Under torch.compile the packed copy, the clamp_min shortcut and the clamps' scratch (a
    strided out=) step aside; fullgraph=True proves no graph break (bc-100 has clamps, 40 not)."""
    fast = optimize_for_inference(build_model(name, seed=0).eval())
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        compiled = torch.compile(fast, fullgraph=True)
        torch.testing.assert_close(compiled(x), fast(x), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("grads", [False, True])
def test_torch_jit_trace_of_the_optimised_model(grads: bool) -> None:
    """Tracing runs the concatenation (writes through ``.data`` are not recorded) and the plain
    convolution, so the traced graph computes the same function for another input."""
    fast = optimize_for_inference(build_model("densenet-bc-100-k12", seed=0).eval())
    with torch.set_grad_enabled(grads):
        traced = torch.jit.trace(fast, torch.randn(4, 3, 32, 32), check_trace=False)
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(traced(x), fast(x), rtol=1e-4, atol=1e-4)
