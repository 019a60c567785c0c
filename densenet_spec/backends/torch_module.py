"""IR to a runnable ``torch.nn.Module`` named as torchvision's DenseNet.

The tiers follow timm: op modules, :class:`DenseLayer`, :class:`DenseBlock`, :class:`Transition`,
the :class:`DenseNet` model, and :func:`build_model`, the builder that walks the IR. Module paths
equal the IR's op paths (``features.denseblock1.denselayer1.conv1``), so torchvision checkpoints
load with ``strict=True``.

``memory_efficient`` recomputes each dense layer's concatenation, first BN and ReLU during the
backward pass instead of keeping them: those are the tensors that grow with depth. It uses
saved-tensor hooks (non-reentrant: the autograd graph is the plain one, only what it saves
changes), so the first convolution is not run again and its output, ``bottleneck_width * k``
maps, is kept as usual; the running BN statistics move once, in the forward pass.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional

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


class DenseLayer(nn.Sequential):
    """Concatenates the block input and the earlier layers' outputs, then runs its ops in order."""

    def __init__(self, ops: OrderedDict[str, nn.Module], memory_efficient: bool = False) -> None:
        super().__init__(ops)
        self.memory_efficient = memory_efficient

    def forward(self, inputs: list[Tensor]) -> Tensor:
        x = torch.cat(inputs, 1) if len(inputs) > 1 else inputs[0]
        lean = self.memory_efficient and self.training and torch.is_grad_enabled()
        if not (lean and self._recomputable() and any(t.requires_grad for t in inputs)):
            for module in self:
                x = module(x)
            return x
        norm, relu, conv, *rest = self
        recompute = _Recompute(inputs, norm)  # type: ignore[arg-type]
        with torch.autograd.graph.saved_tensors_hooks(recompute.pack, recompute.unpack):
            recompute.x = x
            y = recompute.y = norm(x)
            out = conv(relu(y))  # ReLU is in place: what it and the conv save is y itself
        recompute.forget()
        for module in rest:
            out = module(out)
        return out  # type: ignore[no-any-return]

    def _recomputable(self) -> bool:
        """BN-ReLU-conv first. A SyncBatchNorm (whose statistics span devices) runs the plain path."""
        first = list(self)[:3]
        kinds = (nn.BatchNorm2d, nn.ReLU, nn.Conv2d)
        return len(first) == 3 and all(type(m) is k for m, k in zip(first, kinds, strict=True))


class _Recompute:
    """Saved-tensor hooks that keep a recipe instead of the concatenation and its BN-ReLU output.

    Autograd saves the concatenation (for BN's backward) and the BN-ReLU output (for the ReLU's
    and the convolution's backward): the tensors that grow with depth. Each is packed as a token;
    the first unpack in the backward pass recomputes both from the layer's inputs, with the same
    batch statistics and without touching the running ones, and each is let go after its last
    unpack. The convolution is not recomputed.
    """

    def __init__(self, inputs: list[Tensor], norm: nn.BatchNorm2d) -> None:
        self.inputs = list(inputs)  # the block appends to its list after this layer
        self.norm = norm
        self.x: Tensor | None = None
        self.y: Tensor | None = None
        self._pending = {"x": 0, "y": 0}
        self._cache: dict[str, Tensor] = {}

    def pack(self, tensor: Tensor) -> Any:
        for kind in ("x", "y"):
            if tensor is getattr(self, kind):
                self._pending[kind] += 1
                return (kind, self)
        return tensor

    @staticmethod
    def unpack(packed: Any) -> Tensor:
        if not isinstance(packed, tuple):
            return packed  # type: ignore[no-any-return]
        kind, recompute = packed
        return recompute.take(kind)  # type: ignore[no-any-return]

    def forget(self) -> None:
        self.x = self.y = None

    def take(self, kind: str) -> Tensor:
        if not self._cache:
            self._cache = self._recompute()
        tensor = self._cache[kind]
        self._pending[kind] -= 1
        if self._pending[kind] == 0:
            del self._cache[kind]
        return tensor

    def _recompute(self) -> dict[str, Tensor]:
        norm = self.norm
        with torch.no_grad():
            x = torch.cat(self.inputs, 1) if len(self.inputs) > 1 else self.inputs[0]
            y = functional.batch_norm(x, None, None, norm.weight, norm.bias, True, 0.0, norm.eps).relu_()
        return {"x": x, "y": y}


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
