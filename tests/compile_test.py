"""torch.compile(fullgraph=True) of plain and memory_efficient models, in training and inference."""

from __future__ import annotations

import pytest
import torch

from densenet_spec import Spec, build_model

SPEC = Spec.model_validate(
    {"name": "small", "growth_rate": 4, "blocks": [2, 2], "input": {"size": 16}, "stem": "cifar", "num_classes": 3}
)


@pytest.mark.slow
@pytest.mark.parametrize("memory_efficient", [False, True])
@pytest.mark.parametrize("train", [False, True])
def test_compiled_model_equals_eager(memory_efficient: bool, train: bool) -> None:
    torch._dynamo.reset()
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    eager = build_model(SPEC, seed=0).train(train)
    model = build_model(SPEC, seed=0, memory_efficient=memory_efficient).train(train)
    compiled = torch.compile(model, fullgraph=True)
    if not train:
        with torch.no_grad():
            torch.testing.assert_close(compiled(x), eager(x), atol=1e-5, rtol=1e-5)
        return
    eager(x).square().mean().backward()
    compiled(x).square().mean().backward()
    for (name, a), (_, b) in zip(eager.named_parameters(), model.named_parameters(), strict=True):
        assert a.grad is not None and b.grad is not None
        torch.testing.assert_close(b.grad, a.grad, atol=1e-5, rtol=1e-4, msg=name)
    for (name, a), (_, b) in zip(eager.named_buffers(), model.named_buffers(), strict=True):
        torch.testing.assert_close(b, a, msg=name)  # running statistics moved once
