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

from .backends.torch_module import DenseNet, op_module
from .ir import IR, Layer, Op
from .passes import optimize_with_state

EPS = 1e-5


class NormReLU(nn.Module):
    """Eval-mode BN then ReLU as ``max(x * scale + shift, 0)``, one pass over memory."""

    def __init__(self, op: Op, state: Mapping[str, Tensor]) -> None:
        super().__init__()
        g = {k: state[f"{op.path}.{k}"].double() for k in ("weight", "bias", "running_mean", "running_var")}
        scale = g["weight"] / torch.sqrt(g["running_var"] + EPS)
        self.register_buffer("scale", scale.float().view(1, -1, 1, 1))
        self.register_buffer("shift", (g["bias"] - g["running_mean"] * scale).float().view(1, -1, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return torch.addcmul(self.shift, x, self.scale).relu_()


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


def _split_norm_relu(layer: Layer, state: Mapping[str, Tensor]) -> tuple[nn.Module, nn.Sequential]:
    """A layer that starts with BN-ReLU as (fused NormReLU, the rest)."""
    first, second, *rest = layer.ops
    if first.kind != "batchnorm" or second.kind != "relu":
        raise ValueError(f"{layer.name}: expected BN then ReLU first, got {first.kind}, {second.kind}")
    return NormReLU(first, state), _ops_module(tuple(rest), state)


class BufferedLayer(nn.Module):
    def __init__(self, layer: Layer, state: Mapping[str, Tensor]) -> None:
        super().__init__()
        self.in_channels, self.out_channels = layer.in_channels, layer.out_channels
        self.pre, self.body = _split_norm_relu(layer, state)

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
            else:
                for layer in layers:
                    stages.extend(_layer_modules(layer, state))
        self.stages = nn.Sequential(*stages)
        self.eval()

    def forward(self, x: Tensor) -> Tensor:
        return self.stages(x.contiguous(memory_format=torch.channels_last))  # type: ignore[no-any-return]

    def train(self, mode: bool = True) -> FastDenseNet:
        if mode:
            raise RuntimeError("an optimised model is for inference only; train the model from build_model")
        return super().train(False)


def _layer_modules(layer: Layer, state: Mapping[str, Tensor]) -> list[nn.Module]:
    ops = layer.ops
    if layer.name == "features.norm5":
        return [NormReLU(ops[0], state)]  # with the head's leading ReLU, dropped below
    if layer.kind == "classifier" and ops[0].kind == "relu":
        return [_ops_module(ops[1:], state)]
    if len(ops) > 1 and ops[0].kind == "batchnorm" and ops[1].kind == "relu":
        return list(_split_norm_relu(layer, state))
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
