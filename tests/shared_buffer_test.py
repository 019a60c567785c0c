"""The shared-buffer training path computes what the concatenating one does, for every family.

Each case runs one step three ways in float64 (where the two summation orders agree to ~1e-10, so
that a 1e-5 tolerance tests the method and not float32 rounding through 100 batch norms):
concatenation (the reference), the buffer, and the buffer with memory_efficient recomputation.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from densenet_spec import Spec, build_model, load_spec
from densenet_spec.api import as_ir
from densenet_spec.backends.torch_module import DenseBlock, DenseNet

FAMILIES: dict[str, tuple[Any, list[int] | None]] = {
    "imagenet": ("densenet121", [64, 64]),
    "cifar-bc": ("densenet-bc-100-k12", None),
    "no-bottleneck-dropout": ("densenet-40-k12", None),
    "per-block-k": (
        {
            "name": "per-block",
            "input": {"size": 32},
            "stem": "cifar",
            "growth_rate": 6,
            "blocks": [{"layers": 3, "growth_rate": 4}, {"layers": 2, "bottleneck_width": None}, 3],
            "num_classes": 5,
        },
        None,
    ),
    "deep-stem-blur": ("densenetblur121d", [64, 64]),
    "group-norm-gelu": (
        {
            "name": "gn",
            "input": {"size": 32},
            "stem": "cifar",
            "growth_rate": 4,
            "blocks": [3, 3],
            "activation": "gelu",
            "norm": {"kind": "group", "groups": 2},
            "num_classes": 3,
        },
        None,
    ),
    "1-d": ("densenet121-1d", [256]),
    "3-d": ("densenet121-3d", [32, 32, 32]),
}


def _spec(name: str) -> tuple[Any, list[int] | None]:
    spec, size = FAMILIES[name]
    return (Spec.model_validate(spec) if isinstance(spec, dict) else load_spec(spec)), size


def _model(spec: Any, *, shared: bool, memory_efficient: bool = False) -> DenseNet:
    model = build_model(spec, seed=0, memory_efficient=memory_efficient).double().train()
    for block in model.modules():
        if isinstance(block, DenseBlock):
            block.shared_buffer = shared
    return model


def _step(model: DenseNet, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(7)  # the same dropout masks in every run
    x = x.clone().requires_grad_()
    out = model(x)
    out.square().mean().backward()
    assert x.grad is not None
    return out.detach(), x.grad


@pytest.mark.parametrize("family", list(FAMILIES))
@pytest.mark.parametrize("memory_efficient", [False, True], ids=["plain", "memory_efficient"])
def test_buffer_gradients_equal_concatenation(family: str, memory_efficient: bool) -> None:
    spec, size = _spec(family)
    ir = as_ir(spec)
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(2, ir.info.input_channels, *(size or ir.info.input_size), generator=generator, dtype=torch.float64)
    reference = _model(spec, shared=False)
    shared = _model(spec, shared=True, memory_efficient=memory_efficient)
    out_ref, dx_ref = _step(reference, x)
    out, dx = _step(shared, x)
    torch.testing.assert_close(out, out_ref, rtol=1e-5, atol=1e-8)
    torch.testing.assert_close(dx, dx_ref, rtol=1e-5, atol=1e-5 * float(dx_ref.abs().max()))
    for (name, p), q in zip(reference.named_parameters(), shared.parameters(), strict=True):
        assert p.grad is not None and q.grad is not None, name
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-5, atol=1e-5 * float(p.grad.abs().max()), msg=name)
    # Running statistics moved once, alike (num_batches_tracked included).
    for (name, a), b in zip(reference.named_buffers(), shared.buffers(), strict=True):
        torch.testing.assert_close(b, a, rtol=1e-7, atol=1e-10, msg=name)


def _saved_bytes(model: DenseNet, x: torch.Tensor) -> int:
    """Bytes of the distinct storages autograd keeps for the backward pass of one forward."""
    storages: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(x)
    return sum(storages.values())


def test_buffer_keeps_no_concatenation_for_backward() -> None:
    spec = load_spec("densenet-bc-100-k12")
    x = torch.randn(4, 3, 32, 32)
    concatenating = _saved_bytes(_model(spec, shared=False).float(), x)
    shared = _saved_bytes(_model(spec, shared=True).float(), x)
    # Each layer's norm saves a view of the buffer instead of a concatenation of its own.
    assert shared < 0.75 * concatenating, (shared, concatenating)


def test_where_the_buffer_is_used() -> None:
    spec = load_spec("densenet-40-k12")
    x = torch.randn(2, 3, 32, 32)
    plain = build_model(spec, seed=0).train()
    lean = build_model(spec, seed=0, memory_efficient=True).train()
    block, plain_block = lean.features.denseblock1, plain.features.denseblock1
    assert isinstance(block, DenseBlock) and isinstance(plain_block, DenseBlock)
    assert not plain_block.shares_buffer(x)  # plain training: torch.cat is faster on CPU
    assert block.shares_buffer(x)  # memory_efficient in the default layout
    assert not block.shares_buffer(x.contiguous(memory_format=torch.channels_last))
    with torch.no_grad():
        assert not block.shares_buffer(x)  # plain networks infer by concatenation
    block.shared_buffer = False
    assert not block.shares_buffer(x)


def test_channels_last_model_computes_the_same_function() -> None:
    spec = load_spec("densenet-bc-100-k12")
    default = build_model(spec, seed=0).train()
    fast = build_model(spec, seed=0, channels_last=True).train()
    assert fast.get_parameter("features.conv0.weight").is_contiguous(memory_format=torch.channels_last)
    x = torch.randn(4, 3, 32, 32)
    out_default, out_fast = default(x), fast(x)
    torch.testing.assert_close(out_fast, out_default, rtol=1e-4, atol=1e-4)
    out_default.square().mean().backward()
    out_fast.square().mean().backward()
    classifier = fast.classifier.weight.grad
    assert classifier is not None and default.classifier.weight.grad is not None
    torch.testing.assert_close(classifier, default.classifier.weight.grad, rtol=1e-3, atol=1e-4)
    assert fast.state_dict().keys() == default.state_dict().keys()


@pytest.mark.parametrize("preset", ["densenet121-1d", "densenet121-3d"])
def test_channels_last_is_refused_for_other_ranks(preset: str) -> None:
    rank = preset[-2]
    with pytest.raises(ValueError, match=f"channels_last applies to 2-D networks; this one is {rank}-D"):
        build_model(load_spec(preset), channels_last=True)
    with pytest.raises(ValueError, match=f"channels_last applies to 2-D networks; this one is {rank}-D"):
        build_model(load_spec(preset)).set_channels_last()


class _HalfOfInput(torch.nn.Module):
    """A stand-in layer whose output dtype differs from its input's (as under some autocast policies)."""

    def __init__(self, dtype: torch.dtype) -> None:
        super().__init__()
        self.dtype = dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :2].to(self.dtype) * 2


@pytest.mark.parametrize(
    ("given", "made"),
    [(torch.float64, torch.float32), (torch.float32, torch.float64)],
    ids=["narrower-outputs", "wider-outputs"],
)
def test_buffer_takes_the_dtype_the_concatenation_would(given: torch.dtype, made: torch.dtype) -> None:
    from densenet_spec.backends.torch_module import DenseLayer

    block = DenseBlock([DenseLayer(_HalfOfInput(made)), DenseLayer(_HalfOfInput(made))], out_channels=7)
    x = torch.randn(2, 3, 4, 4, dtype=given)
    block.shared_buffer = False
    concatenated = block(x)
    block.shared_buffer = True
    shared = block(x)
    assert concatenated.dtype == shared.dtype == torch.float64
    assert torch.equal(shared, concatenated)


@pytest.mark.parametrize("made", [torch.float32, torch.float64], ids=["same-dtype", "wider-outputs"])
def test_passes_over_a_few_samples_give_the_concatenation(made: torch.dtype, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without autograd a batch goes through the block two samples at a time: into the one
    buffer, or (where an output widens the dtype) into each pass's own, concatenated."""
    from densenet_spec.backends import torch_runtime
    from densenet_spec.backends.torch_module import DenseLayer

    block = DenseBlock([DenseLayer(_HalfOfInput(made)), DenseLayer(_HalfOfInput(made))], out_channels=7)
    x = torch.randn(5, 3, 4, 4)
    monkeypatch.setattr(torch_runtime, "PASS_BYTES", 2 * (2 * 7 * 16 * 4))
    assert block.samples_per_pass(x) == 2
    block.shared_buffer = False
    concatenated = block(x)
    block.shared_buffer = True
    with torch.no_grad():
        shared = block(x)
    assert shared.dtype == concatenated.dtype == torch.promote_types(torch.float32, made)
    assert torch.equal(shared, concatenated)
