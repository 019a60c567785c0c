"""IR to a runnable ``torch.nn.Module`` named as torchvision's DenseNet.

:func:`build_module` instantiates the IR's :func:`~.torch_plan.plan` (the module tree as
constructor calls) with the classes of :mod:`.torch_runtime`. Module paths equal the IR's op paths
(``features.denseblock1.denselayer1.conv1``), so torchvision checkpoints load with ``strict=True``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from ..ir import IR
from . import torch_runtime
from .torch_plan import BlockPlan, Call, Ops, Plan, plan
from .torch_runtime import DenseBlock, DenseLayer, DenseNet, init_weights, seeded

__all__ = ["NAMESPACE", "DenseBlock", "DenseLayer", "DenseNet", "build_module", "instantiate"]

NAMESPACE: dict[str, Any] = {
    "nn": nn,
    "Affine": torch_runtime.Affine,
    "Clamp": torch_runtime.Clamp,
    "BlurPool": torch_runtime.BlurPool,
    "AvgMaxPool": torch_runtime.AvgMaxPool,
}
"""The names a :class:`~.torch_plan.Call` may use; add a class here when an emitter names one."""


def construct(call: Call) -> nn.Module:
    """Run a constructor call."""
    target: Any = NAMESPACE
    for part in call.callee.split("."):
        target = target[part] if isinstance(target, dict) else getattr(target, part)
    module: nn.Module = target(*call.args, **dict(call.kwargs))
    return module


def _sequential(ops: Ops) -> nn.Sequential:
    return nn.Sequential(OrderedDict((name, construct(call)) for name, call in ops))


def instantiate(tree: Plan, memory_efficient: bool = False) -> DenseNet:
    """The modules of ``tree``, constructed in the IR's op order, with torch's default initialisation."""
    features = nn.Sequential()
    for name, node in tree.features:
        if isinstance(node, Call):
            features.add_module(name, construct(node))
        elif isinstance(node, BlockPlan):
            layers = [DenseLayer(OrderedDict((n, construct(c)) for n, c in ops)) for ops in node.layers]
            for layer in layers:
                layer.memory_efficient = memory_efficient
            features.add_module(name, DenseBlock(layers, node.out_channels, tree.inference_only))
        else:
            features.add_module(name, _sequential(node))
    head = _sequential(tree.head)
    classifier = construct(tree.classifier) if tree.classifier is not None else nn.Identity()
    model = DenseNet(features, head, classifier, inference_only=tree.inference_only, channels_last=tree.channels_last)
    return model.to(memory_format=torch.channels_last) if tree.channels_last else model  # type: ignore[call-overload]


def build_module(
    ir: IR,
    *,
    memory_efficient: bool = False,
    seed: int | None = None,
    state_dict: Mapping[str, Tensor] | None = None,
    dtype: torch.dtype | None = None,
) -> DenseNet:
    """The IR's network; reference initialisation (``seed``: reproducible), or ``state_dict`` loaded strictly.

    ``dtype`` converts the modules before the state is loaded, so that float64 weights keep their
    precision. The model keeps its IR as ``model.ir``, for exports and optimisation.
    """
    with seeded(seed):
        model = instantiate(plan(ir), memory_efficient)
        if state_dict is None:
            init_weights(model)
    if dtype is not None:
        model.to(dtype)
    if state_dict is not None:
        model.load_state_dict(state_dict, strict=True)
    if ir.info.inference_only:
        model.eval()
    model.ir = ir
    return model
