"""The module classes of every densenet-spec network; torch only.

This file is both imported by the torch backend and copied verbatim into the standalone source
that ``build --to torch`` writes, so the in-process model and the generated file run the same
code (except that ``optimize_for_inference`` also swaps in ``torch_prepack``'s convolutions on
prepacked weights and its stem max pool on kept memory: the same numbers, a few ms faster on
CPU). The tiers follow timm: :class:`DenseLayer`, :class:`DenseBlock`, the :class:`DenseNet`
model; the op modules are torch's own plus :class:`Affine` and :class:`Clamp`, which an
inference-optimised network uses in place of folded batch norms.

A dense block can concatenate each layer's inputs (O(L^2) copies per block, each concatenation
kept for the backward pass) or write every layer's output once into one buffer of the block's
output size, each layer reading the prefix written so far as a view (the shared storage of Pleiss
et al., "Memory-Efficient Implementation of DenseNets", 2017). In training, :class:`_Prefix`
routes the gradient of a prefix back to the outputs it holds, as the concatenation's backward
would. Where the buffer pays is measured, not assumed (see :meth:`DenseBlock.shares_buffer`):
PyTorch's CPU batch norm is about 2x slower on a strided prefix view than on a contiguous
concatenation (20x in channels_last), which costs more than the copies saved, except where
``memory_efficient`` recomputes the norm anyway.

``memory_efficient`` recomputes each dense layer's concatenation, first norm and activation in the
backward pass instead of keeping them: those are the tensors that grow with depth. It uses
saved-tensor hooks (non-reentrant: the autograd graph is the plain one, only what it saves
changes), so the first convolution is not run again and its output is kept as usual; the running
statistics move once, in the forward pass.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import weakref
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional
from torch.nn.modules import module as _module
from torch.utils.checkpoint import checkpoint


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
    """``min(max(x, lo), hi)`` per channel: a BN-ReLU whose affine part moved into the next conv.

    Where no channel has an upper bound (a folded ReLU) it runs as ``clamp_min``, one tensor
    operand fewer for every element (about 1.5 ms of densenet121's 110 at batch 8 on 2 cores).
    Without autograd on CPU its output reuses the memory of its last call (see :func:`_reused`).
    """

    def __init__(self, channels: int, rank: int) -> None:
        super().__init__()
        shape = (channels,) + (1,) * rank
        self.lo: Tensor
        self.hi: Tensor
        self.register_buffer("lo", torch.full(shape, float("-inf")))
        self.register_buffer("hi", torch.full(shape, float("inf")))
        self._seen: tuple[int, int] | None = None  # the ``hi`` last looked at
        self._unbounded = False

    def forward(self, x: Tensor, out: Tensor | None = None) -> Tensor:
        if torch.compiler.is_compiling() or jit_tracing() or not plain_tensor(x):
            return torch.clamp(x, self.lo, self.hi, out=out)
        if out is None and self._keeps_output(x):
            out = kept_tensor(self, "out", x.shape, x, _memory_format(x))
        if not self._lower_only():
            return torch.clamp(x, self.lo, self.hi, out=out)
        return torch.clamp_min(x, self.lo, out=out)

    def _keeps_output(self, x: Tensor) -> bool:
        if not may_keep_memory(x) or not self.keeps_dtype(x.dtype):
            return False
        channel = x.dim() - self.lo.dim()  # where the bounds' channel axis lines up
        return channel >= 0 and x.shape[channel] == self.lo.shape[0]

    def keeps_dtype(self, dtype: torch.dtype) -> bool:
        """Whether the output has ``dtype`` (the bounds do not widen the input)."""
        return torch.promote_types(dtype, self.lo.dtype) == dtype

    def _lower_only(self) -> bool:
        """Whether every upper bound is +inf, looked at again only when ``hi`` changes."""
        seen = (self.hi.data_ptr(), self.hi._version)
        if seen != self._seen:
            self._seen, self._unbounded = seen, bool(torch.isposinf(self.hi).all())
        return self._unbounded


class BlurPool(nn.Module):
    """timm's blur pool in any rank: reflect-pad 1, binomial [1, 2, 1] filter per axis, stride."""

    def __init__(
        self,
        channels: int,
        rank: int,
        stride: int | tuple[int, ...] = 2,
    ) -> None:
        super().__init__()
        taps = torch.tensor([1.0, 2.0, 1.0]) / 4
        filt = taps
        for _ in range(rank - 1):
            filt = filt[..., None] * taps
        self.stride = stride
        self.rank = rank
        self.filt: Tensor
        shape = (channels, 1) + (3,) * rank
        self.register_buffer("filt", filt.expand(shape).contiguous(), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        x = functional.pad(x, (1, 1) * self.rank, mode="reflect")
        conv = (functional.conv1d, functional.conv2d, functional.conv3d)[self.rank - 1]
        weight = self.filt.to(x.dtype)
        return conv(x, weight, stride=self.stride, groups=x.shape[1])


class AvgMaxPool(nn.Module):
    """Global average and max pooling: their mean, or both concatenated (``cat``), as timm's."""

    def __init__(self, rank: int, cat: bool = False) -> None:
        super().__init__()
        self.dims = tuple(range(2, 2 + rank))
        self.cat = cat

    def forward(self, x: Tensor) -> Tensor:
        avg = x.mean(self.dims, keepdim=True)
        top = x.amax(self.dims, keepdim=True)
        return torch.cat([avg, top], 1) if self.cat else 0.5 * (avg + top)


_BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
_STATELESS_NORMS = (
    nn.GroupNorm,
    nn.InstanceNorm1d,
    nn.InstanceNorm2d,
    nn.InstanceNorm3d,
)
_ACTIVATIONS = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.ELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Hardswish,
)


class DenseLayer(nn.Sequential):
    """Concatenates the block input and the earlier layers' outputs, then runs its ops in order."""

    memory_efficient = False

    def forward(self, inputs: list[Tensor]) -> Tensor:
        x = torch.cat(inputs, 1) if len(inputs) > 1 else inputs[0]
        lean = self.memory_efficient and self.training and torch.is_grad_enabled()
        lean = lean and self._recomputable() and any(t.requires_grad for t in inputs)
        # torch.func's transforms (grad, vmap) take no saved-tensor hooks: the plain path there.
        if not lean or vmapped(inputs[0]):
            for module in self:
                x = module(x)
            return x
        norm, act, conv, *rest = self
        # Saved-tensor hooks do not trace: under torch.compile the compiler recomputes instead.
        if torch.compiler.is_compiling():
            return _compiled_lean(self, inputs)
        out = _lean(inputs, norm, act, conv, keep_input=False)
        # The bottleneck's norm-activation, from the kept output of the 1x1 conv:
        if _recomputable(rest[:3]):
            norm, act, conv, *rest = rest
            out = _lean([out], norm, act, conv, keep_input=True)
        for module in rest:
            out = module(out)
        return out

    def _recomputable(self) -> bool:
        return _recomputable(list(self)[:3])

    def clamps_into(self, prefix: Tensor) -> bool:
        """Whether :meth:`run_clamped` applies: a leading clamp that keeps the input's dtype, and
        no hook anywhere that could see or keep the scratch (the next layer's clamp overwrites
        it) or that ``run_clamped``, which does not go through this layer's ``__call__``, would
        skip."""
        first = self[0] if len(self) else None
        if not isinstance(first, Clamp) or _hooked(self):
            return False
        return first.keeps_dtype(prefix.dtype)

    def run_clamped(self, prefix: Tensor, into: Tensor) -> Tensor:
        """This layer on ``prefix``, its leading clamp writing into ``into`` (of ``prefix``'s shape)."""
        clamp, *rest = self
        x: Tensor = clamp(prefix, out=into)
        for module in rest:
            x = module(x)
        return x


def _hooked(layer: nn.Module) -> bool:
    """Whether a forward or forward-pre hook is set on ``layer``, a module in it, or globally
    (children looked at directly: ``modules()`` costs more than the rest of the check)."""
    if _module._global_forward_hooks or _module._global_forward_pre_hooks:
        return True
    for module in (layer, *layer._modules.values()):
        if module is None:
            continue
        if module._forward_hooks or module._forward_pre_hooks:
            return True
        if module is not layer and module._modules and _hooked(module):
            return True
    return False


def _recomputable(first: list[nn.Module]) -> bool:
    """Norm-activation-conv, with a norm whose batch statistics stay on this device.

    A SyncBatchNorm (statistics across devices) or an instance norm with running statistics
    runs the plain path.
    """
    if len(first) < 3 or not isinstance(first[2], nn.modules.conv._ConvNd):
        return False
    norm, act = first[0], first[1]
    tracks = getattr(norm, "track_running_stats", False)
    stateless = isinstance(norm, _STATELESS_NORMS) and not tracks
    return (type(norm) in _BATCH_NORMS or stateless) and type(act) in _ACTIVATIONS


def _compiled_lean(layer: nn.Sequential, inputs: list[Tensor]) -> Tensor:
    """Under torch.compile: the concatenation and norm-activation as a checkpointed region, which
    the compiler's partitioner recomputes in the backward pass (running statistics move once)."""
    norm, act, conv, *rest = layer

    def bottleneck(*tensors: Tensor) -> Tensor:
        x = torch.cat(tensors, 1) if len(tensors) > 1 else tensors[0]
        return act(norm(x))  # type: ignore[no-any-return]

    out: Tensor = conv(checkpoint(bottleneck, *inputs, use_reentrant=False))
    for module in rest:
        out = module(out)
    return out


def _lean(
    inputs: list[Tensor],
    norm: Any,
    act: Any,
    conv: Any,
    keep_input: bool,
) -> Tensor:
    """``conv(act(norm(cat(inputs))))`` saving a recipe for the concatenation (unless it is kept
    anyway) and the norm-activation outputs instead of the tensors."""
    x = torch.cat(inputs, 1) if len(inputs) > 1 else inputs[0]
    recompute = _Recompute(inputs, norm, act)
    with torch.autograd.graph.saved_tensors_hooks(recompute.pack, recompute.unpack):
        if not keep_input:
            recompute.x = x
        y = recompute.y = norm(x)
        a = recompute.a = act(y)  # an in-place activation returns y itself
        out: Tensor = conv(a)
    recompute.forget()
    return out


class _Recompute:
    """Saved-tensor hooks that keep a recipe instead of the concatenation and its norm-activation.

    Autograd saves the concatenation (for the norm's backward), the norm's output (for the
    activation's) and the activation's output (for the convolution's): the tensors that grow
    with depth. Each is packed as a token; the first unpack in the backward pass recomputes them
    from the layer's inputs, with the same batch statistics and without touching the running
    ones, and each is let go after its last unpack of the pass, so that a retained graph's next
    pass recomputes it again. With ``create_graph`` (grad mode on in the backward pass) the
    recomputation is recorded too, so second-order gradients flow through it. Anything else is
    saved as usual.
    """

    KINDS = ("x", "y", "a")

    def __init__(self, inputs: list[Tensor], norm: Any, act: Any) -> None:
        self.inputs = list(inputs)  # the block appends to its list after this layer
        self.norm = norm
        # The parameters the forward pass used: under torch.func.functional_call they are the
        # caller's, swapped back out of the module by the time the backward pass recomputes.
        self.params = dict(norm.named_parameters())
        self.act = act
        self.x: Tensor | None = None
        self.y: Tensor | None = None
        self.a: Tensor | None = None
        # Unpacks of each kind in one backward pass, and those still to come in this one:
        self._packed = dict.fromkeys(self.KINDS, 0)
        self._pending = dict.fromkeys(self.KINDS, 0)
        self._cache: dict[str, Tensor] = {}

    def pack(self, tensor: Tensor) -> Any:
        for kind in self.KINDS:
            if tensor is getattr(self, kind):
                self._packed[kind] += 1
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
        self.x = self.y = self.a = None

    def take(self, kind: str) -> Tensor:
        if kind not in self._cache:
            self._cache.update(self._recompute())
        tensor = self._cache[kind]
        self._pending[kind] -= 1
        if self._pending[kind] == 0:  # this pass is done with it
            del self._cache[kind]
            self._pending[kind] = self._packed[kind]
        return tensor

    def _recompute(self) -> dict[str, Tensor]:
        norm = self.norm
        x = torch.cat(self.inputs, 1) if len(self.inputs) > 1 else self.inputs[0]
        if isinstance(norm, _BATCH_NORMS):
            w, b = self.params.get("weight"), self.params.get("bias")
            y = functional.batch_norm(x, None, None, w, b, True, 0.0, norm.eps)
        else:
            y = torch.func.functional_call(norm, self.params, (x,))
        a = self.act(y)
        made = zip(self.KINDS, (x, y, a), strict=True)
        return {kind: t for kind, t in made if self._pending[kind]}


class _Prefix(torch.autograd.Function):
    """The first channels of a block's buffer, which hold ``features``: their concatenation as a
    view. The backward pass splits the gradient among the features, as ``torch.cat``'s does."""

    @staticmethod
    def forward(ctx: Any, buffer: Tensor, *features: Tensor) -> Tensor:
        ctx.sizes = [feature.shape[1] for feature in features]
        return buffer[:, : sum(ctx.sizes)]

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        return (None, *torch.split(grad, ctx.sizes, 1))


class DenseBlock(nn.ModuleDict):
    """Dense layers, each fed every earlier output; returns their concatenation with the input.

    ``shared_buffer`` forces the buffer (True) or the concatenation (False); None chooses as
    :meth:`shares_buffer` says.
    """

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
        self.shared_buffer: bool | None = None

    def forward(self, x: Tensor) -> Tensor:
        if self.shares_buffer(x):
            return self._buffered(x)
        features = [x]
        for layer in self.values():
            features.append(layer(features))
        return torch.cat(features, 1)

    def layers(self) -> list[DenseLayer]:
        return list(self.values())  # type: ignore[arg-type]

    def shares_buffer(self, x: Tensor) -> bool:
        """Whether this call writes into one buffer: in inference-only networks without autograd,
        and in ``memory_efficient`` training on a contiguous (not channels_last) input, where the
        norm reads the buffer once and the backward pass recomputes it from there. Under
        torch.compile with autograd, and under torch.jit.trace and torch.export (which do not
        record writes through ``.data``), the concatenation is traced."""
        grads = torch.is_grad_enabled()
        tracing = jit_tracing() or torch.compiler.is_exporting()
        compiled = grads and torch.compiler.is_compiling()
        if tracing or compiled or vmapped(x) or _dual(x):
            return False
        if self.shared_buffer is not None:
            return self.shared_buffer
        if not grads:
            return self.buffered
        lean = self.training and all(layer.memory_efficient for layer in self.values())
        return lean and _memory_format(x) == torch.contiguous_format

    def _buffered(self, x: Tensor) -> Tensor:
        """Each layer's output written once into one buffer; a layer reads the prefix so far.

        Without autograd on CPU, the batch goes through the block a few samples at a time (see
        :meth:`samples_per_pass`), each pass writing into its samples' rows of the one buffer,
        unless a hook is set inside the block.
        """
        reuse = may_keep_memory(x)  # no autograd, on CPU
        buffer = self._empty(x, x.dtype, reuse)
        # A hook on a layer sees the whole batch once, as in the plain network.
        split = reuse and not any(_hooked(layer) for layer in self.layers())
        step = self.samples_per_pass(x) if split else x.shape[0]
        if step >= x.shape[0]:
            return self._fill(buffer, x, reuse)
        starts = range(0, x.shape[0], step)
        passes = [(buffer[i : i + step], x[i : i + step]) for i in starts]
        # A shorter last pass keeps the scratch of the others:
        most = passes[0][0].numel()
        filled = [self._fill(rows, samples, reuse, most) for rows, samples in passes]
        if all(out is rows for out, (rows, _) in zip(filled, passes, strict=True)):
            return buffer
        # An output widened the dtype: each pass made a buffer of its own.
        return torch.cat(filled)

    def samples_per_pass(self, x: Tensor) -> int:
        """How many samples of ``x`` go through the block together without autograd on CPU: as
        many as keep the buffer and the clamps' scratch within :data:`PASS_BYTES`, at least one.

        Why: at batch 8 the first block of densenet121 holds 25 MB of buffer and 22 MB of
        scratch, more than a CPU's caches, and every layer streams its whole prefix through
        memory twice (its clamp reads it and writes the scratch, its 1x1 convolution reads that).
        Two samples a pass there (a pass of 8 MB in a 32 MB cache) took the network from 115 to
        104 ms at batch 8 on 2 cores, and from 629 to 433 ms at batch 32.
        """
        per_sample = 2 * self.out_channels * x.shape[2:].numel() * x.element_size()
        return max(1, PASS_BYTES // max(1, per_sample))

    def _fill(self, buffer: Tensor, x: Tensor, reuse: bool, most: int = 0) -> Tensor:
        """The layers on ``x`` with their outputs in ``buffer`` after it (returned; a new one if
        a layer's output had a wider dtype).

        An output of a wider dtype than the buffer's (some autocast policies) widens the buffer,
        as ``torch.cat`` would. Writes go through ``buffer.data``, whose version counter is its
        own: autograd then does not flag the views that earlier layers saved, whose channels the
        writes never touch.

        Without autograd, the layers' leading clamps all write into one scratch of ``buffer``'s
        size (or ``most`` elements, if more), and the buffer and the scratch reuse the
        memory of the block's last call (see :func:`_reused`).
        """
        grads = torch.is_grad_enabled()
        layout = _memory_format(x)
        end = _write(buffer, 0, x)
        features = [x]
        scratch = None
        for layer in self.layers():
            if grads:
                out = layer([_prefix(buffer, features)])
            elif reuse and layer.clamps_into(buffer):
                if scratch is None:
                    numel = max(buffer.numel(), most)
                    scratch = _reused(self, "scratch", numel, buffer)
                prefix = buffer[:, :end]
                into = _dense_view(scratch, prefix.shape, layout)
                out = layer.run_clamped(prefix, into)
            else:
                out = layer([buffer[:, :end]])
            dtype = torch.promote_types(buffer.dtype, out.dtype)
            if dtype != buffer.dtype:
                narrow, buffer = buffer, self._empty(x, dtype, reuse=False)
                _write(buffer, 0, narrow[:, :end])
                scratch = None
            end = _write(buffer, end, out)
            features.append(out)
        return _prefix(buffer, features) if grads else buffer

    def _empty(self, x: Tensor, dtype: torch.dtype, reuse: bool) -> Tensor:
        shape = torch.Size((x.shape[0], self.out_channels, *x.shape[2:]))
        layout = _memory_format(x)
        if reuse:
            like = x.new_empty(0, dtype=dtype)
            return kept_tensor(self, "buffer", shape, like, layout)
        return torch.empty(shape, dtype=dtype, device=x.device, memory_format=layout)


# Memory kept by module and role, shared by all threads: a thread that finds it in use (another
# thread's call, a nested call from a hook) takes new memory, which is kept instead.
_Kept = dict[str, torch.UntypedStorage]
_KEPT: weakref.WeakKeyDictionary[nn.Module, _Kept] = weakref.WeakKeyDictionary()
_KEPT_LOCK = threading.Lock()
_INNER = frozenset({"scratch", "indices"})  # kept memory that no output is made on
# The buffer and scratch bytes that a dense block's pass over a few samples may hold (see
# DenseBlock.samples_per_pass): about half of a server CPU's last-level cache.
PASS_BYTES = 16 << 20


def _reused(owner: nn.Module, role: str, numel: int, like: Tensor) -> Tensor:
    """A flat tensor of ``numel`` elements of ``like``'s dtype and device, on the memory that
    ``owner`` kept for ``role`` if nothing else uses it any more; else on new memory, kept (on
    CPU) for the next call.

    Why: glibc returns large freed blocks to the system and every forward pass faulted them in
    again: 12,500-15,600 page faults and 121-141 ms a densenet121 forward at batch 8 on 2 cores in
    a fresh process, 107-114 ms and none with the blocks' buffers and scratches, the clamps' and
    the stem pool's outputs kept (onnxruntime's arena keeps its memory too). Memory is reused only
    when nothing but this keeps it (see :func:`_free`), and only if it is of the size asked: an
    output must not carry a larger call's data past its end, which ``torch.save`` would write out
    (memory that no caller sees, the :data:`_INNER` roles, may be up to twice the size: it
    shrinks after a large batch). One set per model, whatever the number of
    threads that call it; the kept memory goes with ``owner``. CUDA's caching allocator already
    reuses memory, so nothing is kept there.
    """
    device = like.device
    nbytes = numel * like.element_size()
    if device.type != "cpu":
        return like.new_empty(numel)
    with _KEPT_LOCK:  # the check and the claim (the tensor made on it) as one step
        kept = _KEPT.setdefault(owner, {})
        slack = 2 if role in _INNER else 1
        if role in kept and _free(kept, role) and _fits(kept[role], nbytes, slack):
            memory = kept[role]
        else:
            raw = torch.empty(nbytes, dtype=torch.uint8, device=device)
            memory = kept[role] = raw.untyped_storage()
        flat: Tensor = like.new_empty(0).set_(memory, 0, (numel,), (1,))
    return flat


def kept_tensor(
    owner: nn.Module,
    role: str,
    shape: torch.Size,
    like: Tensor,
    layout: torch.memory_format,
) -> Tensor:
    """A dense tensor of ``shape`` in ``layout`` on memory that ``owner`` keeps for ``role``
    (see :func:`_reused`)."""
    return _dense_view(_reused(owner, role, shape.numel(), like), shape, layout)


def may_keep_memory(x: Tensor) -> bool:
    """Whether a call on ``x`` may use kept memory: a plain CPU tensor without autograd, not
    under torch.compile (dynamo takes no strided ``out=`` and would guard on kept memory) or
    torch.jit.trace."""
    # Asked first: dynamo cannot trace plain_tensor.
    if torch.compiler.is_compiling() or jit_tracing():
        return False
    return not torch.is_grad_enabled() and x.device.type == "cpu" and plain_tensor(x)


def plain_tensor(x: Tensor) -> bool:
    """``x`` is a ``torch.Tensor`` (no subclass, no torch.func wrapper) outside any torch
    function or dispatch mode (FakeTensorMode, a ``torch.device`` context): where tensors are
    what they seem."""
    if type(x) is not Tensor or vmapped(x):
        return False
    if torch._C._is_torch_function_mode_enabled():
        return False
    modes = getattr(torch._C, "_len_torch_dispatch_stack", None)
    return modes is not None and int(modes()) == 0


def _python_refs(kept: _Kept, role: str) -> int:
    return sys.getrefcount(kept[role])


# The references to a storage that a dict alone holds, as _python_refs counts them.
_ALONE = _python_refs({"": torch.empty(0, dtype=torch.uint8).untyped_storage()}, "")


def _free(kept: _Kept, role: str) -> bool:
    """Whether nothing but ``kept`` holds the memory of ``role``: no tensor (storage use count 1,
    taken as in use on a torch that cannot say), no Python reference to the storage object
    (``tensor.untyped_storage()`` hands out this very object), and not moved into shared memory
    (a tensor sent to another process, which maps it)."""
    if _python_refs(kept, role) != _ALONE:  # before any local name refers to it
        return False
    count = getattr(torch._C, "_storage_Use_Count", None)
    memory = kept[role]
    if count is None or memory.is_shared():
        return False
    return int(count(memory._cdata)) == 1


def _fits(memory: torch.UntypedStorage, nbytes: int, slack: int) -> bool:
    return nbytes <= memory.nbytes() <= slack * nbytes


def vmapped(x: Tensor) -> bool:
    """Whether ``x`` is a torch.func (vmap, grad) wrapper: it answers no layout questions.
    (Not asked under torch.compile, which cannot trace the question and handles vmap itself.)"""
    if torch.compiler.is_compiling():
        return False
    wrapped = getattr(torch._C._functorch, "is_functorch_wrapped_tensor", None)
    return wrapped is not None and bool(wrapped(x))


def _dual(x: Tensor) -> bool:
    """Whether ``x`` carries a forward-mode tangent (``torch.autograd.forward_ad``): the buffer's
    prefix view has no jvp, the concatenation has."""
    if torch.compiler.is_compiling():
        return False
    return torch.autograd.forward_ad.unpack_dual(x).tangent is not None  # type: ignore[no-untyped-call]


def jit_tracing() -> bool:
    """Whether torch.jit.trace is recording: it does not see writes through ``.data``, and bakes
    Python-side choices into the graph."""
    return torch._C._get_tracing_state() is not None


def _write(buffer: Tensor, start: int, tensor: Tensor) -> int:
    """Copy ``tensor`` into ``buffer`` from channel ``start``; return where the next one goes."""
    end = start + tensor.shape[1]
    with torch.no_grad():
        buffer.data[:, start:end] = tensor
    return end


def _prefix(buffer: Tensor, features: list[Tensor]) -> Tensor:
    return _Prefix.apply(buffer, *features)  # type: ignore[no-untyped-call,no-any-return]


def _dense_view(flat: Tensor, shape: torch.Size, layout: torch.memory_format) -> Tensor:
    """The front of ``flat`` as a dense tensor of ``shape`` in ``layout`` (a channel prefix of a
    channels_last buffer is not dense, and a convolution reading it would copy it first)."""
    rank = len(shape)
    last = layout in (torch.channels_last, torch.channels_last_3d)
    order = [0, *range(2, rank), 1] if last else list(range(rank))
    strides = [0] * rank
    step = 1
    for axis in reversed(order):
        strides[axis] = step
        step *= shape[axis]
    return flat[:step].as_strided(shape, strides)


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

    load_report: Any = None  # what densenet_spec.build_model's weights= read, or None
    ir: Any = None  # the densenet_spec.IR it was built from, if densenet_spec built it

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
        return self.forward_head(self.forward_features(x))

    def forward_features(self, x: Tensor) -> Tensor:
        """The last block's map after the final norm, before its activation and the head (as
        torchvision's ``features``; timm's method of this name also applies the activation)."""
        # Under vmap each sample comes without its batch axis and answers no layout questions.
        if not vmapped(x):
            _check_batched(x, self.features)
            if self.channels_last and x.dim() == 4:
                x = x.contiguous(memory_format=torch.channels_last)
        return self.features(x)  # type: ignore[no-any-return]

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        """The head on :meth:`forward_features`' output: the logits, or with ``pre_logits`` the
        pooled features the classifier takes (timm's method of this name)."""
        pooled = self.head(x)
        return pooled if pre_logits else self.classifier(pooled)  # type: ignore[no-any-return]

    def train(self, mode: bool = True) -> DenseNet:
        if mode and self.inference_only:
            message = "this network is for inference only (batch norms folded)"
            raise RuntimeError(message + "; train the plain model")
        return super().train(mode)

    def set_channels_last(self, enabled: bool = True) -> DenseNet:
        """Weights and inputs in channels_last (2-D networks), where CPU and GPU convolutions and
        batch norms run fastest, in training as in inference; the values are unchanged."""
        convs = [m for m in self.modules() if isinstance(m, nn.modules.conv._ConvNd)]
        rank = convs[0].weight.dim() - 2 if convs else 0
        if enabled and rank != 2:
            message = "channels_last applies to 2-D networks"
            raise ValueError(f"{message}; this one is {rank}-D")
        layout = torch.channels_last if enabled else torch.contiguous_format
        for param in self.parameters():
            if param.dim() == 4:
                param.data = param.data.contiguous(memory_format=layout)
        self.channels_last = enabled
        return self

    def set_memory_efficient(self, enabled: bool = True) -> DenseNet:
        for module in self.modules():
            if isinstance(module, DenseLayer):
                module.memory_efficient = enabled
        return self


def _check_batched(x: Tensor, features: nn.Module) -> None:
    """Refuse an input without its batch axis: convolutions take one, and the blocks would then
    concatenate along a spatial axis (a shape error deep inside, or in a network without batch
    norms none at all)."""
    convs = (m for m in features.modules() if isinstance(m, nn.modules.conv._ConvNd))
    stem = next(convs, None)
    if stem is None or x.dim() == stem.weight.dim():
        return
    spatial = {1: "L", 2: "H, W", 3: "D, H, W"}.get(stem.weight.dim() - 2, "...")
    expected, got = f"(N, {stem.in_channels}, {spatial})", tuple(x.shape)
    raise ValueError(f"expected a batch of shape {expected}, got one of shape {got}")


_SEEDED = threading.RLock()


@contextlib.contextmanager
def seeded(seed: int | None) -> Iterator[None]:
    """torch's global generator seeded with ``seed`` inside the block and restored after it, one
    seeded block at a time across threads (two seeded builds in two threads interleaved their
    draws); with ``seed`` None, the generator as it is.

    A thread that draws random numbers without this, while a seeded block runs, still moves the
    generator under it: build in one thread, or load the weights, where that matters.
    """
    if seed is None:
        yield
        return
    with _SEEDED, torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def init_weights(model: nn.Module) -> None:
    """The reference initialisation: kaiming-normal convolutions, norms 1 and 0, linear bias 0;
    in an inference-optimised network, clamps at 0 from below (a BN-ReLU of such norms, folded;
    left unbounded, a fresh network would have no activations at all)."""
    for module in model.modules():
        if isinstance(module, Clamp):
            nn.init.zeros_(module.lo)
        elif isinstance(module, nn.modules.conv._ConvNd):
            nn.init.kaiming_normal_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.modules.batchnorm._NormBase) and module.affine:
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)
