"""The module classes of every densenet-spec network; torch only.

This file is both imported by the torch backend and copied verbatim into the standalone source
that ``build --to torch`` writes, so the in-process model and the generated file run the same
code. The tiers follow timm: :class:`DenseLayer`, :class:`DenseBlock`, the :class:`DenseNet`
model; the op modules are torch's own plus :class:`Affine` and :class:`Clamp`, which an
inference-optimised network uses in place of folded batch norms.

Training concatenates each layer's inputs. A ``buffered`` block (an inference-only network) run
without autograd writes every layer's output once into one preallocated buffer instead, and each
layer reads the prefix written so far.

``memory_efficient`` recomputes each dense layer's concatenation, first norm and activation in the
backward pass instead of keeping them: those are the tensors that grow with depth. It uses
saved-tensor hooks (non-reentrant: the autograd graph is the plain one, only what it saves
changes), so the first convolution is not run again and its output is kept as usual; the running
statistics move once, in the forward pass.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional


class Affine(nn.Module):
    """``x * scale + shift`` per channel: an inference-mode batch norm, folded."""

    def __init__(self, channels: int, rank: int) -> None:
        super().__init__()
        shape = (channels,) + (1,) * rank
        self.scale: Tensor
        self.shift: Tensor
        self.register_buffer("scale", torch.ones(shape))
        self.register_buffer("shift", torch.zeros(shape))

    def forward(self, x: Tensor) -> Tensor:
        return torch.addcmul(self.shift, x, self.scale)


class Clamp(nn.Module):
    """``min(max(x, lo), hi)`` per channel: a BN-ReLU whose affine part moved into the next conv."""

    def __init__(self, channels: int, rank: int) -> None:
        super().__init__()
        shape = (channels,) + (1,) * rank
        self.lo: Tensor
        self.hi: Tensor
        self.register_buffer("lo", torch.full(shape, float("-inf")))
        self.register_buffer("hi", torch.full(shape, float("inf")))

    def forward(self, x: Tensor) -> Tensor:
        return torch.clamp(x, self.lo, self.hi)


class DenseLayer(nn.Sequential):
    """Concatenates the block input and the earlier layers' outputs, then runs its ops in order."""

    memory_efficient = False

    def forward(self, inputs: list[Tensor]) -> Tensor:
        x = torch.cat(inputs, 1) if len(inputs) > 1 else inputs[0]
        lean = self.memory_efficient and self.training and torch.is_grad_enabled()
        if not (lean and self._recomputable() and any(t.requires_grad for t in inputs)):
            for module in self:
                x = module(x)
            return x
        norm, act, conv, *rest = self
        recompute = _Recompute(inputs, norm)
        with torch.autograd.graph.saved_tensors_hooks(recompute.pack, recompute.unpack):
            recompute.x = x
            y = recompute.y = norm(x)
            # The ReLU is in place: what it and the conv save is y itself.
            out = conv(act(y))
        recompute.forget()
        for module in rest:
            out = module(out)
        return out  # type: ignore[no-any-return]

    def _recomputable(self) -> bool:
        """BN-ReLU-conv first. A SyncBatchNorm (whose statistics span devices) runs the plain path."""
        first = list(self)[:3]
        norms = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
        return (
            len(first) == 3
            and type(first[0]) in norms
            and type(first[1]) is nn.ReLU
            and isinstance(first[2], nn.modules.conv._ConvNd)
        )


class _Recompute:
    """Saved-tensor hooks that keep a recipe instead of the concatenation and its BN-ReLU output.

    Autograd saves the concatenation (for BN's backward) and the BN-ReLU output (for the ReLU's
    and the convolution's backward). Each is packed as a token; the first unpack in the backward
    pass recomputes both from the layer's inputs, with the same batch statistics and without
    touching the running ones, and each is let go after its last unpack.
    """

    def __init__(self, inputs: list[Tensor], norm: Any) -> None:
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
            w, b = norm.weight, norm.bias
            y = functional.batch_norm(x, None, None, w, b, True, 0.0, norm.eps).relu_()
        return {"x": x, "y": y}


class DenseBlock(nn.ModuleDict):
    """Dense layers, each fed every earlier output; returns their concatenation with the input."""

    def __init__(
        self,
        layers: Iterable[DenseLayer],
        out_channels: int,
        buffered: bool = False,
    ) -> None:
        named = ((f"denselayer{i}", layer) for i, layer in enumerate(layers, start=1))
        super().__init__(OrderedDict(named))
        self.out_channels = out_channels
        self.buffered = buffered

    def forward(self, x: Tensor) -> Tensor:
        if self.buffered and not torch.is_grad_enabled():
            return self._buffered(x)
        features = [x]
        for layer in self.values():
            features.append(layer(features))
        return torch.cat(features, 1)

    def _buffered(self, x: Tensor) -> Tensor:
        """Each layer's output written once into one buffer; a layer reads the prefix so far."""
        shape = (x.shape[0], self.out_channels, *x.shape[2:])
        layout = _memory_format(x)
        buf = torch.empty(shape, dtype=x.dtype, device=x.device, memory_format=layout)
        end = x.shape[1]
        buf[:, :end] = x
        for layer in self.values():
            out = layer([buf[:, :end]])
            buf[:, end : end + out.shape[1]] = out
            end += out.shape[1]
        return buf


def _memory_format(x: Tensor) -> torch.memory_format:
    if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    if x.dim() == 5 and x.is_contiguous(memory_format=torch.channels_last_3d):
        return torch.channels_last_3d
    return torch.contiguous_format


class DenseNet(nn.Module):
    """``features`` (stem, blocks, transitions, final norm), then ``head`` and ``classifier``.

    An ``inference_only`` network (batch norms folded away) refuses ``train()``; with
    ``channels_last`` the input is converted on the way in, where CPU convolutions are fastest.
    """

    def __init__(
        self,
        features: nn.Sequential,
        head: nn.Sequential,
        classifier: nn.Module,
        *,
        inference_only: bool = False,
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        self.features = features
        self.head = head
        self.classifier = classifier
        self.inference_only = inference_only
        self.channels_last = channels_last

    def forward(self, x: Tensor) -> Tensor:
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.classifier(self.head(self.features(x)))  # type: ignore[no-any-return]

    def train(self, mode: bool = True) -> DenseNet:
        if mode and self.inference_only:
            message = "this network is for inference only (batch norms folded)"
            raise RuntimeError(message + "; train the plain model")
        return super().train(mode)

    def set_memory_efficient(self, enabled: bool = True) -> DenseNet:
        for module in self.modules():
            if isinstance(module, DenseLayer):
                module.memory_efficient = enabled
        return self


def init_weights(model: nn.Module) -> None:
    """The reference initialisation: kaiming-normal convolutions, norms 1 and 0, linear bias 0."""
    for module in model.modules():
        if isinstance(module, nn.modules.conv._ConvNd):
            nn.init.kaiming_normal_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.modules.batchnorm._NormBase) and module.affine:
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)
