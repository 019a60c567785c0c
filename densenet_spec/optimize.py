"""Fast inference: :func:`optimize_for_inference` turns a built model into an eval-only one.

It runs the inference passes on the model's IR (transition pool before its convolution, BN
folded into the bottleneck convolution) with the model's weights, then builds a module that
avoids the eager model's repeated concatenation: each block owns one preallocated buffer, and
each layer reads the channels written so far and writes its ``k`` new maps after them. The first
BN and ReLU of a layer become one fused multiply-add and clamp. Activations are kept in
channels_last, where the CPU convolutions are fastest.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from .backends.torch_module import DenseNet, op_module
from .ir import IR, Layer, Op
from .passes import optimize_with_state

EPS = 1e-5


def _affine(op: Op, state: Mapping[str, Tensor]) -> tuple[Tensor, Tensor]:
    """An eval-mode BN as ``x * scale + shift`` per channel (float64)."""
    g = {k: state[f"{op.path}.{k}"].double() for k in ("weight", "bias", "running_mean", "running_var")}
    scale = g["weight"] / torch.sqrt(g["running_var"] + EPS)
    return scale, g["bias"] - g["running_mean"] * scale


class NormReLU(nn.Module):
    """Eval-mode BN then ReLU as ``max(x * scale + shift, 0)``."""

    def __init__(self, op: Op, state: Mapping[str, Tensor]) -> None:
        super().__init__()
        scale, shift = _affine(op, state)
        self.scale: Tensor
        self.shift: Tensor
        self.register_buffer("scale", scale.float().view(1, -1, 1, 1))
        self.register_buffer("shift", shift.float().view(1, -1, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return torch.addcmul(self.shift, x, self.scale).relu_()


class Clamp(nn.Module):
    """BN-ReLU with its affine part moved into the next linear op: one clamp per element.

    ``relu(s*x + b) = s * clamp(x, lo, hi) + b`` per channel, with ``lo = -b/s`` for ``s > 0`` and
    ``hi = -b/s`` for ``s < 0``; ``s`` and ``b`` then fold into the weights and bias of the 1x1
    convolution or linear layer that follows (average pools between them commute).
    """

    def __init__(self, scale: Tensor, shift: Tensor) -> None:
        super().__init__()
        edge = torch.where(scale != 0, -shift / scale, torch.zeros_like(scale))
        inf = torch.full_like(scale, float("inf"))
        lo = torch.where(scale > 0, edge, torch.where(scale < 0, -inf, torch.zeros_like(scale)))
        hi = torch.where(scale < 0, edge, torch.where(scale > 0, inf, torch.zeros_like(scale)))
        self.lo: Tensor
        self.hi: Tensor
        self.register_buffer("lo", lo.float().view(1, -1, 1, 1))
        self.register_buffer("hi", hi.float().view(1, -1, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return torch.clamp(x, self.lo, self.hi)


def _fold_affine_into(module: nn.Module, scale: Tensor, shift: Tensor) -> None:
    """Make ``module`` (1x1 conv or linear) compute ``module(scale * c + const)`` from ``c``."""
    assert isinstance(module, nn.Conv2d | nn.Linear)
    const = torch.where(scale != 0, shift, shift.clamp(min=0))  # s == 0: relu(b) is the whole output
    weight = module.weight.detach().double()
    flat = weight.reshape(weight.shape[0], weight.shape[1])
    bias = flat @ const + (module.bias.detach().double() if module.bias is not None else 0.0)
    scaled = flat * scale.view(1, -1)
    with torch.no_grad():
        module.weight.copy_(scaled.reshape(weight.shape).float())
    module.bias = nn.Parameter(bias.float())


_LINEAR_AFTER_POOL = ("avgpool", "global_avgpool", "flatten")


def _ops_module(ops: tuple[Op, ...], state: Mapping[str, Tensor]) -> nn.Sequential:
    """Plain modules for ``ops`` (dropout dropped: identity at inference), weights loaded."""
    modules = nn.Sequential()
    for op in ops:
        if op.kind == "dropout":
            continue
        module = op_module(op)
        own = {key: state[f"{op.path}.{key}"] for key in op.tensors() if f"{op.path}.{key}" in state}
        module.load_state_dict(own, strict=False)
        modules.add_module(op.path.replace(".", "_"), module)
    return modules


def _split_norm_relu(norm: Op, rest: tuple[Op, ...], state: Mapping[str, Tensor]) -> tuple[nn.Module, nn.Sequential]:
    """BN-ReLU then ``rest`` as (pre-activation, the rest's modules), folding where exact.

    When the next op that mixes channels is a 1x1 convolution or the linear layer (possibly behind
    average pools), the BN's affine folds into it and only a clamp remains; before a 3x3
    convolution (zero padding makes its response to a constant uneven) BN-ReLU stays one fused
    multiply-add and ReLU.
    """
    body = _ops_module(rest, state)  # dropout is left out: identity at inference
    kept = [op for op in rest if op.kind != "dropout"]
    index = next((i for i, op in enumerate(kept) if op.kind not in _LINEAR_AFTER_POOL), None)
    if index is not None:
        target = kept[index]
        if (target.kind == "conv" and target.kernel == 1 and target.padding == 0) or target.kind == "linear":
            scale, shift = _affine(norm, state)
            _fold_affine_into(body[index], scale, shift)
            return Clamp(scale, shift), body
    return NormReLU(norm, state), body


def _norm_relu_layer(layer: Layer, state: Mapping[str, Tensor]) -> tuple[nn.Module, nn.Sequential]:
    first, second, *rest = layer.ops
    if first.kind != "batchnorm" or second.kind != "relu":
        raise ValueError(f"{layer.name}: expected BN then ReLU first, got {first.kind}, {second.kind}")
    return _split_norm_relu(first, tuple(rest), state)


class BufferedLayer(nn.Module):
    def __init__(self, layer: Layer, state: Mapping[str, Tensor]) -> None:
        super().__init__()
        self.in_channels, self.out_channels = layer.in_channels, layer.out_channels
        self.pre, self.body = _norm_relu_layer(layer, state)

    def forward(self, buffer: Tensor) -> None:
        end = self.in_channels + self.out_channels
        buffer[:, self.in_channels : end] = self.body(self.pre(buffer[:, : self.in_channels]))


class BufferedBlock(nn.Module):
    """A dense block writing into one preallocated buffer instead of concatenating per layer."""

    def __init__(self, layers: list[Layer], state: Mapping[str, Tensor]) -> None:
        super().__init__()
        self.in_channels = layers[0].in_channels
        self.out_channels = layers[-1].in_channels + layers[-1].out_channels
        self.layers = nn.ModuleList(BufferedLayer(layer, state) for layer in layers)

    def forward(self, x: Tensor) -> Tensor:
        n, _, h, w = x.shape
        buffer = torch.empty(n, self.out_channels, h, w, dtype=x.dtype, device=x.device)
        buffer = buffer.contiguous(memory_format=torch.channels_last)
        buffer[:, : self.in_channels] = x
        for layer in self.layers:
            layer(buffer)
        return buffer


class FastDenseNet(nn.Module):
    """An eval-only DenseNet computing the same function as the model it was made from."""

    def __init__(self, ir: IR, state: Mapping[str, Tensor]) -> None:
        super().__init__()
        self.ir = ir
        stages: list[nn.Module] = []
        for name, layers in ir.stages().items():
            if name.startswith("denseblock"):
                stages.append(BufferedBlock(layers, state))
            elif name == "stem":
                stages.append(_fuse_conv_bn(_ops_module(tuple(op for layer in layers for op in layer.ops), state)))
            else:
                for layer in layers:
                    stages.extend(_layer_modules(layer, ir, state))
        self.stages = nn.Sequential(*stages)
        self.eval()

    def forward(self, x: Tensor) -> Tensor:
        return self.stages(x.contiguous(memory_format=torch.channels_last))  # type: ignore[no-any-return]

    def train(self, mode: bool = True) -> FastDenseNet:
        if mode:
            raise RuntimeError("an optimised model is for inference only; train the model from build_model")
        return super().train(False)


def _fuse_conv_bn(modules: nn.Sequential) -> nn.Sequential:
    """Fold each eval-mode BN into the convolution right before it (the stem's conv0 and norm0)."""
    out = nn.Sequential()
    items = list(modules.named_children())
    for name, module in items:
        previous = out[-1] if len(out) else None
        if isinstance(module, nn.BatchNorm2d) and isinstance(previous, nn.Conv2d):
            out[-1] = fuse_conv_bn_eval(previous.eval(), module.eval())
        else:
            out.add_module(name, module)
    return out


def _head_fused(ir: IR) -> bool:
    """Whether norm5 (one BN) and the classifier's leading ReLU become one pre-activation."""
    norm5, head = ir.layer("features.norm5").ops, ir.layer("classifier").ops
    return len(norm5) == 1 and norm5[0].kind == "batchnorm" and head[0].kind == "relu"


def _layer_modules(layer: Layer, ir: IR, state: Mapping[str, Tensor]) -> list[nn.Module]:
    ops = layer.ops
    if layer.name in ("features.norm5", "classifier") and _head_fused(ir):
        if layer.kind == "classifier":
            return []  # emitted with norm5
        return list(_split_norm_relu(ops[0], ir.layer("classifier").ops[1:], state))
    if len(ops) > 1 and ops[0].kind == "batchnorm" and ops[1].kind == "relu":
        return list(_norm_relu_layer(layer, state))
    return [_ops_module(ops, state)]


def optimize_for_inference(model: DenseNet) -> FastDenseNet:
    """An eval-only model computing the same function as ``model`` (with its weights), faster.

    Args:
        model: a model from :func:`~densenet_spec.build_model`, with any weights loaded.
    """
    if not isinstance(model, DenseNet):
        raise TypeError("optimize_for_inference takes a model made by densenet_spec.build_model")
    device = next(model.parameters()).device
    state = {key: value.detach().cpu() for key, value in model.state_dict().items()}
    ir, state = optimize_with_state(model.ir, state)
    fast = FastDenseNet(ir, state).to(device)
    return fast.to(memory_format=torch.channels_last)  # type: ignore[call-overload,no-any-return]
