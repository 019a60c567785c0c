"""A backbone: the network's feature maps at every resolution, as timm's ``features_only`` models.

:func:`build_features` wraps a built :class:`~.torch_runtime.DenseNet`'s ``features`` (the same
modules, so its weights and ``memory_efficient`` setting carry over) and returns the maps at the
taps of :func:`~.taps.feature_taps`; modules after the last tap asked for are left out, as timm
does. ``feature_info`` lists each map's channels, reduction and module, as timm's.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from torch import Tensor, nn

from ..ir import IR
from .taps import Tap, feature_taps, select
from .torch_module import construct
from .torch_plan import module_call
from .torch_runtime import DenseNet


class FeatureInfo(list[dict[str, int | str]]):
    """timm's ``feature_info``: a list of ``{num_chs, reduction, module}``, with its accessors."""

    def channels(self) -> list[int]:
        return [int(entry["num_chs"]) for entry in self]

    def reduction(self) -> list[int]:
        return [int(entry["reduction"]) for entry in self]

    def module_name(self) -> list[str]:
        return [str(entry["module"]) for entry in self]


class FeatureNet(nn.Module):
    """``forward(x)`` returns the feature maps at the chosen taps, shallowest first.

    The maps are computed by the same modules as the whole network's (``features``), so a full
    backward hook on ``features``, any tap module or ``features.norm5`` works as on the model.
    """

    def __init__(self, features: nn.Sequential, taps: Sequence[Tap], final_act: nn.Module | None) -> None:
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
        self.feature_info = FeatureInfo(tap.info() for tap in taps)

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
    taps = select(feature_taps(ir), out_indices)
    act = taps[-1].act
    net = FeatureNet(model.features, taps, construct(module_call(act)) if act is not None else None)
    net.ir = ir  # type: ignore[assignment,unused-ignore]
    return net.train(model.training)
