"""Reading user checkpoints safely and checking them against the IR.

Checkpoints are untrusted input: ``torch.load`` runs with ``weights_only=True`` (safe from torch
2.6 on, which the package requires) and ``.safetensors`` files are read with the safetensors
package when it is installed. Every missing, unexpected or mis-shaped key is reported by name.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .errors import Location, Problem, SpecError
from .ir import IR

# Old torchvision checkpoints name dense-layer modules `norm.1`, `conv.2`, ... (before module
# names could not hold dots); today's names are `norm1`, `conv2`.
_OLD_TORCHVISION = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.([12])\.(weight|bias|running_mean|running_var|num_batches_tracked)$"
)


def read_checkpoint(path: Path) -> dict[str, Tensor]:
    """The state_dict in ``path``: a state_dict, or a checkpoint holding one under ``state_dict`` or ``model``."""
    where = Location(str(path))
    if not path.is_file():
        raise SpecError([Problem(where, "", "no such checkpoint file")])
    try:
        if path.suffix == ".safetensors":
            obj: Any = _read_safetensors(path)
        else:
            with warnings.catch_warnings():  # pickle protocol notices; the refusal itself is reported
                warnings.simplefilter("ignore")
                obj = torch.load(path, map_location="cpu", weights_only=True)
    except SpecError:
        raise
    except Exception as exc:  # a corrupt file or one holding objects: no traceback, just why
        raise SpecError([Problem(where, "", f"cannot read the checkpoint safely: {_reason(exc)}")]) from None
    for key in ("state_dict", "model"):
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            obj = obj[key]
            break
    if not isinstance(obj, Mapping) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise SpecError(
            [
                Problem(
                    where,
                    "",
                    "expected a state_dict (names to tensors), or a dict with one under 'state_dict' or 'model'",
                )
            ]
        )
    return _normalise_keys(dict(obj))


def _reason(exc: Exception) -> str:
    """The useful part of a loading error (torch's advice to pass weights_only=False is not)."""
    text = str(exc)
    if "WeightsUnpickler error:" in text:
        detail = text.split("WeightsUnpickler error:", 1)[1].split("Check the documentation", 1)[0]
        return " ".join(detail.split()) + "; only tensors and plain containers are accepted"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else f"not a torch checkpoint ({type(exc).__name__})"


def _read_safetensors(path: Path) -> dict[str, Tensor]:
    try:
        from safetensors.torch import load_file  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        raise SpecError(
            [
                Problem(
                    Location(str(path)),
                    "",
                    "reading .safetensors needs the safetensors package: pip install safetensors",
                )
            ]
        ) from None
    return dict(load_file(str(path)))


def _normalise_keys(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Strip DDP's ``module.`` prefix and rename old torchvision keys."""
    if state and all(key.startswith("module.") for key in state):
        state = {key.removeprefix("module."): value for key, value in state.items()}
    return {_OLD_TORCHVISION.sub(r"\1\2.\3", key): value for key, value in state.items()}


def check_state_dict(state: Mapping[str, Tensor], ir: IR, file: str = "<state_dict>") -> list[Problem]:
    """Every key of ``state`` that does not fit the IR's modules, by name."""
    where = Location(file)
    expected = ir.state_shapes()
    # num_batches_tracked may be absent (checkpoints older than torch 0.4.1); nothing reads it at inference.
    problems = [
        Problem(where, "", f"missing key {key} (shape {list(shape)})")
        for key, shape in expected.items()
        if key not in state and not key.endswith("num_batches_tracked")
    ]
    for key, value in state.items():
        if key not in expected:
            problems.append(Problem(where, "", f"unexpected key {key}"))
        elif tuple(value.shape) != expected[key]:
            problems.append(
                Problem(where, "", f"{key} has shape {list(value.shape)}, the spec needs {list(expected[key])}")
            )
    return problems


def load_state_dict(path: Path, ir: IR) -> dict[str, Tensor]:
    """Read and check a checkpoint for ``ir``; raises SpecError listing every mismatch."""
    state = read_checkpoint(path)
    problems = check_state_dict(state, ir, str(path))
    if problems:
        raise SpecError(problems)
    return state
