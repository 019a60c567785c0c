"""The feature taps of a network, read off the IR: where a backbone's feature maps come from.

One tap per resolution, as timm's ``features_only`` DenseNet: the stem's output before its pool
(timm's ``norm0``, ``norm2`` for the deep stem), each dense block's output but the last, and the
last block's after the final norm and activation (``norm5``). Each tap records its channels and
reduction (the product of the strides before it), the IR layers whose outputs it concatenates and
the activation applied after (the head's, for ``norm5``), so that the torch module and the ONNX
graph compute the same maps from the same description.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ..ir import IR, Act, Blur, Conv, Layer, Pool, Shape


@dataclass(frozen=True)
class Tap:
    """One feature map.

    Attributes:
        index: its place among the network's taps (``out_indices`` refer to it).
        module: the module it is named after, as timm's ``feature_info`` (``features.norm0``).
        after: the child of ``features`` whose output it is taken from (``features.relu0``).
        sources: the IR layers whose outputs, concatenated, make the map.
        channels: channels of the map.
        size: its spatial size at the spec's input size.
        reduction: input size over map size (the product of the strides before it).
        act: applied to the map after ``after`` (the head's activation, for ``norm5``), or None.
    """

    index: int
    module: str
    after: str
    sources: tuple[str, ...]
    channels: int
    size: Shape
    reduction: int
    act: Act | None = None

    def info(self) -> dict[str, int | str]:
        """The entry of timm's ``feature_info``: ``num_chs``, ``reduction``, ``module``."""
        return {"num_chs": self.channels, "reduction": self.reduction, "module": self.module}


def feature_taps(ir: IR) -> list[Tap]:
    """Every tap of ``ir``, in order: the stem, each block (the last through the final norm)."""
    layers = list(ir.layers())
    strides = _cumulative_strides(layers)
    by_name = {layer.name: i for i, layer in enumerate(layers)}
    taps = [_stem_tap(layers, strides)]
    blocks = ir.blocks()
    for b, block in enumerate(blocks, start=1):
        after = layers[by_name[block[-1].name] + 1]  # the transition, norm5 or the head
        if b < len(blocks):
            taps.append(_block_tap(ir, len(taps), b, after, strides[by_name[block[-1].name]]))
        else:
            taps.append(_final_tap(ir, len(taps), b, after, layers, strides[by_name[block[-1].name]]))
    return taps


def _cumulative_strides(layers: Sequence[Layer]) -> list[int]:
    """The reduction at each layer's output: the product of the first-axis strides so far."""
    out, total = [], 1
    for layer in layers:
        for op in layer.ops:
            if isinstance(op, Conv | Pool | Blur):
                total *= op.stride[0]
        out.append(total)
    return out


def _stem_tap(layers: Sequence[Layer], strides: list[int]) -> Tap:
    """The stem's last layer before its pool (the whole stem when it has no pool, as cifar's)."""
    stem = [i for i, layer in enumerate(layers) if layer.stage == "stem"]
    before_pool = [i for i in stem if layers[i].kind != "pool"]
    last = before_pool[-1]
    layer = layers[last]
    module = layer.name
    if layer.kind == "relu" and last > 0 and layers[last - 1].kind == "norm":
        module = layers[last - 1].name  # timm's norm-act module is named after the norm
    size = layer.out_size
    return Tap(0, module, layer.name, (layer.name,), layer.out_channels, size, strides[last])


def _block_tap(ir: IR, index: int, block: int, after: Layer, reduction: int) -> Tap:
    name = f"features.denseblock{block}"
    return Tap(index, name, name, tuple(ir.inputs(after.name)), after.in_channels, after.in_size, reduction)


def _final_tap(ir: IR, index: int, block: int, after: Layer, layers: Sequence[Layer], reduction: int) -> Tap:
    """The last block through the final norm (if any) and the head's activation, as timm's ``norm5``."""
    head = layers[-1]
    act = head.ops[0] if isinstance(head.ops[0], Act) else None
    if after.kind == "norm":
        return Tap(index, after.name, after.name, (after.name,), after.out_channels, after.out_size, reduction, act)
    name = f"features.denseblock{block}"
    sources = tuple(ir.inputs(after.name))
    return Tap(index, name, name, sources, after.in_channels, after.in_size, reduction, act)


def select(taps: Sequence[Tap], out_indices: Sequence[int] | None, name: str = "out_indices") -> list[Tap]:
    """The taps at ``out_indices`` (negative ones count from the end; None: all), in network order;
    messages call them ``name`` (the argument the caller took them as).

    Raises:
        TypeError: not a sequence of ints (``2``, ``(True,)``).
        ValueError: no index, an index out of range, or one given twice.
    """
    if out_indices is None:
        return list(taps)
    count = len(taps)
    try:
        if isinstance(out_indices, str | bytes) or not isinstance(out_indices, Iterable):
            raise TypeError
        given = list(out_indices)  # read once: a generator too
    except TypeError:  # a number, a string, a 0-d array
        raise TypeError(f"{name} takes a sequence of tap numbers such as (1, 2), not {out_indices!r}") from None
    if not all(_whole(index) for index in given):
        raise TypeError(f"{name} takes whole tap numbers of 0..{count - 1}, not {given!r}")
    out_indices = [operator.index(index) for index in given]  # numpy's integers too
    if not out_indices:
        raise ValueError(f"{name} is empty; give at least one tap of 0..{count - 1}, or None for all {count}")
    chosen = []
    for index in out_indices:
        if not -count <= index < count:
            raise ValueError(f"{name}: {index} is out of range; this network has {count} taps (0..{count - 1})")
        chosen.append(taps[index % count])
    if len({tap.index for tap in chosen}) != len(chosen):
        raise ValueError(f"{name}: {list(out_indices)} names a tap twice")
    return sorted(chosen, key=lambda tap: tap.index)


def _whole(index: object) -> bool:
    """An integer of any kind (numpy's too) but a bool."""
    if isinstance(index, bool):
        return False
    try:
        operator.index(index)  # type: ignore[arg-type]
    except TypeError:
        return False
    return True


def backbone_keys(ir: IR, out_indices: Sequence[int] | None = None, name: str = "out_indices") -> frozenset[str]:
    """The state_dict keys of the backbone with these taps: those of ``features`` up to the last
    tap's module (the rest of the network is left out of it, as timm does). ``name``: as :func:`select`."""
    last = select(feature_taps(ir), out_indices, name)[-1].after
    children: list[str] = []
    for layer in ir.layers():
        child = ".".join(layer.name.split(".")[:2])
        if child.startswith("features.") and child not in children:
            children.append(child)
    kept = set(children[: children.index(last) + 1])
    return frozenset(key for key in ir.state_shapes() if ".".join(key.split(".")[:2]) in kept)


def describe(taps: Sequence[Tap]) -> str:
    """``0: features.norm0 (64 ch, /2), ...`` for messages."""
    return ", ".join(f"{t.index}: {t.module} ({t.channels} ch, /{t.reduction})" for t in taps)
