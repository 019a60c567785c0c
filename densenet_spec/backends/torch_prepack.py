"""Convolution weights reordered once for oneDNN, for ``optimize_for_inference`` on CPU.

``torch.nn.functional.conv2d`` hands oneDNN its weights in PyTorch's layout, and oneDNN reorders
them into its blocked layout on every call: 2.7 ms of a densenet121 forward at batch 8 on 2 cores,
32 MB read and written. :class:`PackedConv2d` keeps the reordered copy and calls the oneDNN
convolution that takes it (``torch.ops.mkldnn``, the ops that torch.compile's CPU freezing uses),
2-3 ms (2-3%) faster per forward, the same numbers bit for bit here. The parameter stays as it is
(the state_dict is unchanged and portable); the copy is made on the first call at each spatial
size (see :class:`PackedConv2d`) and again whenever the weight is replaced or changed in place
where autograd sees it (``load_state_dict``, ``copy_`` under ``no_grad``, ``.to()``), and costs
the weights' size in memory once more for each size kept. A change written
through ``weight.data`` is not seen (``.data`` has a version counter of its own): run
``optimize_for_inference`` again after such an edit.

Anywhere else the plain convolution runs: other devices and dtypes, autograd through the weights
or the input, autocast, tracing and torch.compile, or a torch built without oneDNN.

:class:`KeptMaxPool2d` (the stem's max pool) writes its output and indices into memory kept from
its last call, as the dense blocks and clamps do (see ``torch_runtime.kept_tensor``): its 18 MiB a
call at batch 8 were the largest allocation left that glibc gave back to the system and that
the next call faulted in again.
"""

from __future__ import annotations

import threading
from typing import Any

import torch
from torch import Tensor, nn

from .torch_runtime import _memory_format, jit_tracing, kept_tensor, may_keep_memory, vmapped


def available() -> bool:
    """Whether this torch has oneDNN and the prepacked-convolution ops."""
    ops = torch.ops.mkldnn
    return bool(
        torch.backends.mkldnn.is_available()  # type: ignore[no-untyped-call]
        and hasattr(ops, "_reorder_convolution_weight")
        and hasattr(ops, "_convolution_pointwise")
    )


class PackedConv2d(nn.Conv2d):
    """An ``nn.Conv2d`` (same parameters, same state_dict keys) that runs on prepacked weights
    where it can; see the module docstring for where it cannot.

    oneDNN picks the weights' layout by the input's spatial size (not its batch): a copy packed
    for 32x32 was reordered again on every call at 224x224 (67 reorders a densenet121 forward).
    So one copy is kept per spatial size, for the :attr:`max_packs` sizes used last.
    """

    _packs: dict[tuple[int, ...], Tensor] | None = None  # the packed weights by input spatial size
    _packed_from: tuple[int, int, int] | None = None  # the weight's data pointer, version and size
    max_packs = 4

    def forward(self, x: Tensor) -> Tensor:
        if not self._packable(x):
            return super().forward(x)
        out: Tensor = torch.ops.mkldnn._convolution_pointwise(
            x,
            self._weights(x),
            self.bias,
            list(self.padding),
            list(self.stride),
            list(self.dilation),
            self.groups,
            "none",
            [],
            "",
        )
        return out

    def _packable(self, x: Tensor) -> bool:
        weight = self.weight
        if x.device.type != "cpu" or weight.device.type != "cpu" or x.dim() != 4:
            return False
        if x.shape[1] != self.in_channels:  # the plain convolution says what is wrong
            return False
        if x.dtype != torch.float32 or weight.dtype != torch.float32 or isinstance(self.padding, str):
            return False
        if vmapped(x):
            return False
        if self.padding_mode != "zeros" or not x.is_contiguous(memory_format=torch.channels_last):
            return False
        if torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad):
            return False
        traced = torch.compiler.is_compiling() or jit_tracing()
        return not traced and not torch.is_autocast_enabled("cpu")

    def _weights(self, x: Tensor) -> Tensor:
        weight = self.weight
        source = (weight.data_ptr(), weight._version, weight.shape.numel())
        size = tuple(x.shape[2:])
        with _PACKS_LOCK:  # threads calling at once share one table
            if self._packs is None or source != self._packed_from:
                self._packs, self._packed_from = {}, source
            packed = self._packs.pop(size, None)  # put back last below: the last used stay
            if packed is None:
                packed = torch.ops.mkldnn._reorder_convolution_weight(
                    weight.detach(),
                    list(self.padding),
                    list(self.stride),
                    list(self.dilation),
                    self.groups,
                    list(x.shape),
                )
                while len(self._packs) >= self.max_packs:
                    del self._packs[next(iter(self._packs))]  # the size least recently used
            self._packs[size] = packed
        return packed

    def __getstate__(self) -> dict[str, Any]:
        """Pickled and deep-copied without the packed copies (oneDNN's opaque tensors do not
        pickle); they are made again on the first call."""
        state = self.__dict__.copy()
        state.pop("_packs", None)
        state.pop("_packed_from", None)
        return state


_PACKS_LOCK = threading.Lock()
_SHAPES_LOCK = threading.Lock()


class KeptMaxPool2d(nn.MaxPool2d):
    """An ``nn.MaxPool2d`` whose output reuses the memory of its last call on CPU without
    autograd; elsewhere (and asked for its indices) it is the plain one."""

    _shapes: dict[torch.Size, torch.Size] | None = None  # output shape by input shape
    max_shapes = 64

    def forward(self, x: Tensor) -> Tensor:
        if not self._keeps_output(x):
            plain: Tensor = super().forward(x)
            return plain
        shape = self._output_shape(x)
        layout = _memory_format(x)
        out = kept_tensor(self, "out", shape, x, layout)
        indices = kept_tensor(self, "indices", shape, x.new_empty(0, dtype=torch.long), layout)
        pool = torch.ops.aten.max_pool2d_with_indices.out
        pool(
            x,
            _pair(self.kernel_size),
            _pair(self.stride),
            _pair(self.padding),
            _pair(self.dilation),
            self.ceil_mode,
            out=out,
            indices=indices,
        )
        return out

    def _keeps_output(self, x: Tensor) -> bool:
        return x.dim() == 4 and not self.return_indices and may_keep_memory(x)

    def _output_shape(self, x: Tensor) -> torch.Size:
        """Worked out once per input shape, on the meta device (no data); at most ``max_shapes``
        are remembered, the oldest going first (a server fed images of many sizes would otherwise
        grow the table)."""
        shapes = self.__dict__.setdefault("_shapes", {})
        shape: torch.Size | None = shapes.get(x.shape)
        if shape is None:
            shape = super().forward(torch.empty(x.shape, device="meta")).shape
            with _SHAPES_LOCK:  # threads share the table
                if len(shapes) >= self.max_shapes:
                    shapes.pop(next(iter(shapes)))
                shapes[x.shape] = shape
        return shape


def _pair(value: int | tuple[int, ...]) -> list[int]:
    return [value, value] if isinstance(value, int) else list(value)


def prepack(model: nn.Module) -> int:
    """Make every plain ``nn.Conv2d`` of ``model`` a :class:`PackedConv2d` (where this torch can)
    and every plain ``nn.MaxPool2d`` a :class:`KeptMaxPool2d`, in place; returns how many
    convolutions."""
    count = 0
    packs = available()
    for module in model.modules():
        if type(module) is nn.MaxPool2d:
            module.__class__ = KeptMaxPool2d
        elif type(module) is nn.Conv2d and packs:
            module.__class__ = PackedConv2d
            count += 1
    return count
