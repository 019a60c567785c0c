"""IR to a runnable ``torch.nn.Module`` named as torchvision's DenseNet.

The tiers follow timm: op modules, :class:`DenseLayer`, :class:`DenseBlock`, :class:`Transition`,
the :class:`DenseNet` model, and :func:`build_model`, the builder that walks the IR. Module paths
equal the IR's op paths (``features.denseblock1.denselayer1.conv1``), so torchvision checkpoints
load with ``strict=True``.

``memory_efficient`` recomputes each dense layer's concatenation, first BN and ReLU during the
backward pass (non-reentrant checkpointing) instead of keeping them: those are the tensors that
grow with depth. The first convolution's output is small (``bottleneck_width * k`` maps) and is
kept, so the convolution is not run twice. The first BN updates its running statistics only in
the real forward, not again when recomputed.
"""

from __future__ import annotations

import functools
import os
from collections import OrderedDict
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional
from torch.utils.checkpoint import CheckpointPolicy, checkpoint, create_selective_checkpoint_contexts

from ..compiler import compile_spec
from ..ir import IR, Layer, Op
from ..loader import load_spec
from ..schema import Spec


def op_module(op: Op) -> nn.Module:
    """The torch module of one IR op."""
    if op.kind == "conv":
        return nn.Conv2d(op.in_channels, op.out_channels, op.kernel, op.stride, op.padding, bias=op.bias)
    if op.kind == "batchnorm":
        return nn.BatchNorm2d(op.in_channels)
    if op.kind == "relu":
        return nn.ReLU(inplace=True)
    if op.kind == "maxpool":
        return nn.MaxPool2d(op.kernel, op.stride, op.padding)
    if op.kind == "avgpool":
        return nn.AvgPool2d(op.kernel, op.stride, op.padding)
    if op.kind == "dropout":
        return nn.Dropout(op.p)
    if op.kind == "global_avgpool":
        return nn.AdaptiveAvgPool2d(1)
    if op.kind == "flatten":
        return nn.Flatten(1)
    if op.kind == "linear":
        return nn.Linear(op.in_channels, op.out_channels)
    raise ValueError(f"{op.path}: no torch module for op kind {op.kind!r}")


def _modules(ops: tuple[Op, ...]) -> OrderedDict[str, nn.Module]:
    return OrderedDict((op.name, op_module(op)) for op in ops)


def _keep_convolutions(ctx: Any, func: Any, *args: Any, **kwargs: Any) -> CheckpointPolicy:
    if func is torch.ops.aten.convolution.default:
        return CheckpointPolicy.MUST_SAVE
    return CheckpointPolicy.PREFER_RECOMPUTE


_KEEP_CONVOLUTIONS = functools.partial(create_selective_checkpoint_contexts, _keep_convolutions)


class DenseLayer(nn.Sequential):
    """Concatenates the block input and the earlier layers' outputs, then runs its ops in order."""

    def __init__(self, ops: OrderedDict[str, nn.Module], memory_efficient: bool = False) -> None:
        super().__init__(ops)
        self.memory_efficient = memory_efficient
        names = list(ops)
        # The ops recomputed under memory_efficient: up to and including the first convolution.
        first_conv = next(i for i, m in enumerate(ops.values()) if isinstance(m, nn.Conv2d))
        self._recomputed = names[: first_conv + 1]

    def forward(self, inputs: list[Tensor]) -> Tensor:
        recompute = self.memory_efficient and self.training and torch.is_grad_enabled()
        if recompute and any(t.requires_grad for t in inputs):
            x = self._checkpointed_head(inputs)
            rest = list(self._modules.values())[len(self._recomputed) :]
        else:
            x = torch.cat(inputs, 1) if len(inputs) > 1 else inputs[0]
            rest = list(self._modules.values())
        for module in rest:
            x = module(x)
        return x

    def _checkpointed_head(self, inputs: list[Tensor]) -> Tensor:
        head_modules = {name: self._modules[name] for name in self._recomputed}
        norms = {name: _OnceBatchNorm(m) for name, m in head_modules.items() if isinstance(m, nn.BatchNorm2d)}
        calls = 0

        def head(*tensors: Tensor) -> Tensor:
            nonlocal calls
            first_call, calls = calls == 0, calls + 1
            x = torch.cat(tensors, 1) if len(tensors) > 1 else tensors[0]
            for name, module in head_modules.items():
                x = norms[name](x, first_call) if name in norms else module(x)
            return x

        out: Tensor = checkpoint(head, *inputs, use_reentrant=False, context_fn=_KEEP_CONVOLUTIONS)
        return out


class _OnceBatchNorm:
    """A training-mode BN whose running statistics move in the forward pass only.

    Recomputation must run the very same ops (selective checkpointing checks), so it runs the
    same ``batch_norm`` on spare copies of the statistics, made before the checkpointed region.
    """

    def __init__(self, bn: nn.BatchNorm2d) -> None:
        self.bn = bn
        self.factor = bn.momentum if bn.momentum is not None else 0.0
        if bn.num_batches_tracked is not None:
            bn.num_batches_tracked.add_(1)
            if bn.momentum is None:
                self.factor = 1.0 / float(bn.num_batches_tracked)
        running = (bn.running_mean, bn.running_var)
        self.spare = tuple(t.clone() if t is not None else None for t in running)

    def __call__(self, x: Tensor, first_call: bool) -> Tensor:
        bn = self.bn
        mean, var = (bn.running_mean, bn.running_var) if first_call else self.spare
        return functional.batch_norm(x, mean, var, bn.weight, bn.bias, True, self.factor, bn.eps)


class DenseBlock(nn.ModuleDict):
    """Dense layers, each fed every earlier output; returns their concatenation with the input."""

    def forward(self, x: Tensor) -> Tensor:
        features = [x]
        for layer in self.values():
            features.append(layer(features))
        return torch.cat(features, 1)


class Transition(nn.Sequential):
    """BN-ReLU-conv1x1-avgpool between two blocks (the order as the IR says)."""


class DenseNet(nn.Module):
    """``features`` (stem, blocks, transitions, final norm), then ``head`` and ``classifier``."""

    def __init__(self, features: nn.Sequential, head: nn.Sequential, classifier: nn.Module, ir: IR) -> None:
        super().__init__()
        self.features = features
        self.head = head
        self.classifier = classifier
        self.ir = ir  # what the model was built from, for optimize_for_inference and exports

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.head(self.features(x)))  # type: ignore[no-any-return]

    def set_memory_efficient(self, enabled: bool = True) -> DenseNet:
        for module in self.modules():
            if isinstance(module, DenseLayer):
                module.memory_efficient = enabled
        return self


def modules_from_ir(ir: IR, memory_efficient: bool = False) -> DenseNet:
    """The model's module tree, one module per IR op, left with torch's default initialisation."""
    features = nn.Sequential()
    head = nn.Sequential()
    classifier: nn.Module | None = None
    for layer in ir.layers():
        if layer.kind == "dense_layer":
            block = _child(features, layer.stage, DenseBlock)
            block.add_module(_local(layer), DenseLayer(_modules(layer.ops), memory_efficient))
        elif layer.kind == "transition":
            features.add_module(_local(layer), Transition(_modules(layer.ops)))
        elif layer.kind == "classifier":
            for op in layer.ops:
                if op.kind == "linear":
                    classifier = op_module(op)
                else:
                    head.add_module(op.name, op_module(op))
        else:
            for name, module in _modules(layer.ops).items():
                features.add_module(name, module)
    if classifier is None:
        raise ValueError("the IR has no linear classifier")
    return DenseNet(features, head, classifier, ir)


def _local(layer: Layer) -> str:
    return layer.name.rsplit(".", 1)[-1]


def _child(parent: nn.Module, name: str, kind: type[nn.Module]) -> nn.Module:
    if name not in parent._modules:
        parent.add_module(name, kind())
    module = parent._modules[name]
    assert module is not None
    return module


def init_weights(model: nn.Module) -> None:
    """The reference initialisation: kaiming-normal convolutions, BN 1 and 0, linear bias 0."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            nn.init.zeros_(module.bias)


def as_ir(spec: Spec | IR | str | os.PathLike[str]) -> IR:
    """A Spec, a path, a preset name or an IR, compiled to an IR."""
    if isinstance(spec, IR):
        return spec
    return compile_spec(spec if isinstance(spec, Spec) else load_spec(spec))


def build_model(
    spec: Spec | IR | str | os.PathLike[str], *, memory_efficient: bool = False, seed: int | None = None
) -> DenseNet:
    """A ``torch.nn.Module`` of the network, built from the compiled IR alone.

    Args:
        spec: a Spec, a spec file, a preset name, or an already compiled IR.
        memory_efficient: recompute the concatenation-BN-ReLU of each dense layer in backward
            instead of storing it (less memory, a little more time in training).
        seed: seed of the initial weights; the same seed gives the same weights. ``None`` draws
            from torch's global generator.
    """
    ir = as_ir(spec)
    with torch.random.fork_rng(devices=[], enabled=seed is not None):
        if seed is not None:
            torch.manual_seed(seed)
        model = modules_from_ir(ir, memory_efficient)
        init_weights(model)
    return model
