"""A backbone: the network's feature maps at every resolution, as timm's ``features_only`` models.

:func:`build_features` wraps a built :class:`~.torch_runtime.DenseNet`'s ``features`` (the same
modules, so its weights and ``memory_efficient`` setting carry over) and returns the maps at the
taps of :func:`~.taps.feature_taps`; modules after the last tap asked for are left out, as timm
does. ``feature_info`` lists each map's channels, reduction and module, as timm's.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from torch import Tensor, nn

from ..ir import IR
from .taps import Tap, feature_taps, select
from .torch_module import construct
from .torch_plan import module_call
from .torch_runtime import DenseNet

Index = int | Sequence[int] | None


class FeatureInfo(list[dict[str, int | str]]):
    """timm's ``feature_info``: a list of ``{num_chs, reduction, module}``, one per tap returned,
    with timm's accessors. As in timm, ``idx`` counts among all the network's taps (the numbers of
    ``out_indices``), and None means the taps returned."""

    def __init__(self, taps: Sequence[Tap], chosen: Sequence[Tap]) -> None:
        super().__init__(tap.info() for tap in chosen)
        self.out_indices = tuple(tap.index for tap in chosen)
        self._all = [tap.info() for tap in taps]

    def get(self, key: str, idx: Index = None) -> Any:
        """The ``key`` of each tap returned (``idx`` None), of the tap ``idx``, or of each of ``idx``."""
        if isinstance(idx, int):
            return self._all[idx][key]
        return [self._all[i][key] for i in (self.out_indices if idx is None else idx)]

    def get_dicts(self, keys: Sequence[str] | None = None, idx: Index = None) -> Any:
        """The entries as :meth:`get` picks them, each with only ``keys`` if given."""

        def entry(i: int) -> dict[str, int | str]:
            full = self._all[i]
            return dict(full) if keys is None else {key: full[key] for key in keys}

        if isinstance(idx, int):
            return entry(idx)
        return [entry(i) for i in (self.out_indices if idx is None else idx)]

    def channels(self, idx: Index = None) -> Any:
        return self.get("num_chs", idx)

    def reduction(self, idx: Index = None) -> Any:
        return self.get("reduction", idx)

    def module_name(self, idx: Index = None) -> Any:
        return self.get("module", idx)


class FeatureNet(nn.Module):
    """``forward(x)`` returns the feature maps at the chosen taps, shallowest first.

    The maps are computed by the same modules as the whole network's (``features``), so a full
    backward hook on ``features``, any tap module or ``features.norm5`` works as on the model.
    """

    load_report: Any = None  # what build_model's weights= read (a densenet_spec.LoadReport), or None
    ir: IR | None = None  # the IR it was built from

    def __init__(
        self, features: nn.Sequential, taps: Sequence[Tap], final_act: nn.Module | None, every: Sequence[Tap]
    ) -> None:
        super().__init__()
        last = taps[-1].after.rsplit(".", 1)[-1]
        kept = []
        for name, module in features.named_children():
            kept.append((name, module))
            if name == last:
                break
        self.features = nn.Sequential(OrderedDict(kept))
        self.final_act = final_act if final_act is not None else nn.Identity()
        self.taps = list(taps)
        self._after = {tap.after.rsplit(".", 1)[-1]: tap for tap in taps}
        self.feature_info = FeatureInfo(every, taps)

    def forward(self, x: Tensor) -> list[Tensor]:
        out = []
        for name, module in self.features.named_children():
            x = module(x)
            tap = self._after.get(name)
            if tap is not None:
                out.append(self.final_act(x) if tap.act is not None else x)
        return out


def build_features(model: DenseNet, ir: IR, out_indices: Sequence[int] | None = None) -> FeatureNet:
    """The backbone of ``model`` (built from ``ir``), returning the maps at ``out_indices`` (default: all)."""
    every = feature_taps(ir)
    taps = select(every, out_indices)
    act = taps[-1].act
    net = FeatureNet(model.features, taps, construct(module_call(act)) if act is not None else None, every)
    net.ir = ir
    return net.train(model.training)
