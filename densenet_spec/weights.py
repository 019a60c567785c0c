"""Reading user checkpoints safely and checking them against the IR.

Checkpoints are untrusted input: ``torch.load`` runs with ``weights_only=True`` (safe from torch
2.6 on, which the package requires) and ``.safetensors`` files are read with the safetensors
package (a dependency). Every missing, unexpected or mis-shaped key is reported by name, and so is
every value that is not a dense, finite, floating-point tensor. A refusal never repeats torch's
advice to pass ``weights_only=False``: that would run code from the file.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Collection, Mapping
from contextlib import suppress
from dataclasses import dataclass
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
    """The state_dict in ``path`` with torchvision's key names, whatever its layout (see :func:`canonical_state`)."""
    return canonical_state(read_state(path))[0]


def read_state(path: Path) -> dict[str, Tensor]:
    """The state_dict in ``path``, keys as saved (see :func:`unwrap_state`)."""
    where = Location(str(path))
    try:
        regular = path.is_file()
    except (OSError, ValueError):
        regular = False
    if not regular:  # a FIFO or device would block or never end: refuse before opening
        reason = "not a regular file" if path.exists() else "no such checkpoint file"
        raise SpecError([Problem(where, "", reason)])
    return unwrap_state(_load_any(path, where), where)


# Where training scripts keep the weights inside a checkpoint, in the order looked for: plain
# (timm, Lightning), PyTorch's tutorials, DeiT-style, then an EMA copy when it is all there is.
WRAPPERS = ("state_dict", "model_state_dict", "model", "state_dict_ema", "model_ema")


def unwrap_state(obj: Any, where: Location) -> dict[str, Tensor]:
    """The state_dict in a loaded checkpoint (or one given in memory): ``obj`` itself, or the
    first of :data:`WRAPPERS` that holds one.

    Every key must be a string and every value a dense floating-point tensor with finite values
    (``num_batches_tracked`` counters may be integers): anything else would be cast or copied
    silently into the model. Each problem names the file first, then the key.
    """
    if isinstance(obj, Mapping):
        obj = next((obj[key] for key in WRAPPERS if isinstance(obj.get(key), Mapping)), obj)
    if not isinstance(obj, Mapping):
        wrappers = ", ".join(repr(key) for key in WRAPPERS)
        message = f"expected a state_dict (names to tensors), or a dict with one under {wrappers}"
        raise SpecError([Problem(where, "", f"{message}; it holds a {type(obj).__name__}")])
    problems = [Problem(where, "", message) for message in _entry_problems(obj)]
    if problems:
        if not any(isinstance(value, Tensor) for value in obj.values()):
            keys = ", ".join(repr(key) for key in list(obj)[:8])
            problems.append(Problem(where, "", f"no tensors at all: is the state_dict under another key? ({keys})"))
        raise SpecError(problems)
    return dict(obj)


def _load_any(path: Path, where: Location) -> Any:
    """The object in a checkpoint file, read without running code from it."""
    safetensors = path.suffix == ".safetensors" or _looks_like_safetensors(path)
    try:
        if safetensors:
            return _read_safetensors(path)
        with warnings.catch_warnings():  # pickle protocol notices; the refusal itself is reported
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except SpecError:
        raise
    except Exception as exc:  # a corrupt file or one holding objects: no traceback, just why
        if _empty(path):
            message = "the file is empty (an interrupted download or save?)"
        elif safetensors:
            message = f"not a readable safetensors file (cut short or damaged?): {_reason(exc, path)}"
        elif not _looks_like_torch_save(path):
            message = "not a torch checkpoint (torch.save writes a zip archive; .safetensors files are read too)"
        elif _cut_short(path) or re.search(r"unexpected EOF|corrupted", str(exc), re.IGNORECASE):
            message = (
                "the checkpoint is cut short or damaged: it starts as torch.save's output but its end is "
                "missing (an interrupted download or save?); fetch or save it again"
            )
        else:
            message = f"cannot read the checkpoint safely: {_reason(exc, path)}"
        raise SpecError([Problem(where, "", message)]) from None


FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
_COUNTER_DTYPES = (torch.int64, torch.int32)


def _entry_problems(state: Mapping[Any, Any]) -> list[str]:
    """What is wrong with each entry of a state_dict, by key; at most a screenful of the same kind."""
    messages: list[str] = []
    for key, value in state.items():
        if not isinstance(key, str):
            messages.append(f"key {key!r} ({type(key).__name__}) is not a string: a state_dict maps names to tensors")
        elif not isinstance(value, Tensor):
            messages.append(f"{key} holds {article(type(value).__name__)}, not a tensor")
        else:
            messages.extend(f"{key} {reason}" for reason in _tensor_problems(key, value))
    return at_most(messages, 50, "entries like these")


def at_most(messages: list[str], limit: int, more: str) -> list[str]:
    """``messages`` cut to ``limit``, then a line counting the rest ("... and 70 more ``more``"):
    a screenful to read, where a checkpoint of another network has hundreds."""
    if len(messages) <= limit:
        return messages
    return [*messages[:limit], f"... and {len(messages) - limit:,} more {more}"]


def article(noun: str) -> str:
    """``a deep``, ``an imagenet``: the noun with its indefinite article."""
    return f"an {noun}" if noun[:1].lower() in "aeiou" else f"a {noun}"


def _tensor_problems(key: str, value: Tensor) -> list[str]:
    """Why a tensor cannot be weights: sparse or meta storage, a non-float dtype, NaN or infinite
    values, a negative running variance."""
    if value.layout != torch.strided:
        return [f"is a {str(value.layout).removeprefix('torch.')} tensor; save dense tensors (tensor.to_dense())"]
    if value.is_meta:
        return ["is a meta tensor: it has a shape but no values; save the trained weights"]
    counter = key.endswith("num_batches_tracked") and value.dtype in _COUNTER_DTYPES
    if value.dtype not in FLOAT_DTYPES and not counter:
        names = ", ".join(str(d).removeprefix("torch.") for d in FLOAT_DTYPES)
        return [f"has dtype {str(value.dtype).removeprefix('torch.')}; weights must be floating point ({names})"]
    if counter:
        return []
    if key.endswith(_BOUNDS):  # a folded clamp: no bound on a side is an infinite one
        nan = int(torch.isnan(value).sum())
        return [f"holds {nan:,} NaN values (of {value.numel():,})"] if nan else []
    finite = torch.isfinite(value)
    if not bool(finite.all()):
        bad = int(finite.numel() - finite.sum())
        return [f"holds {bad:,} NaN or infinite values (of {value.numel():,})"]
    below = value < -_VARIANCE_SLACK  # rounding noise above it is harmless: the norm's eps covers it
    if key.endswith("running_var") and bool(below.any()):  # its square root made NaN outputs
        negative = int(below.sum())
        noun = "variance" if negative == 1 else "variances"
        return [f"holds {negative:,} negative {noun} (of {value.numel():,}); a variance is never below 0"]
    return []


_BOUNDS = (".lo", ".hi")
_VARIANCE_SLACK = 1e-5  # torch's default eps: a variance above -eps still gives a real square root


_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")
# torch's refusal suggests weights_only=False or allow-listing the class: both run code from the file.
_ADVICE = re.compile(r"weights_only|safe_globals|trust|pytorch\.org|file an issue", re.IGNORECASE)


def _reason(exc: Exception, path: Path) -> str:
    """Why a checkpoint cannot be read, without torch's advice to load it unsafely."""
    text = str(exc)
    found = _GLOBAL.search(text)
    if found:
        name = found.group(1)
        if _is_pickled_module(path):
            return (
                f"it holds a whole pickled model ({name}), not a state_dict; "
                "save the weights with torch.save(model.state_dict(), PATH) and pass that file"
            )
        return f"it holds a Python object ({name}); reading one could run code, so only tensors are read"
    if "WeightsUnpickler error:" in text or "Weights only load failed" in text:
        detail = text.split("WeightsUnpickler error:", 1)[-1]
        kept = [line.strip() for line in detail.splitlines() if line.strip() and not _ADVICE.search(line)]
        what = f" ({kept[0][:200]})" if kept else ""
        return f"it holds something other than tensors and plain containers{what}"
    lines = [line.strip() for line in text.splitlines() if line.strip() and not _ADVICE.search(line)]
    return lines[0][:300] if lines else f"not a torch checkpoint ({type(exc).__name__})"


# torch.save's legacy (pre-zip) files begin with a pickled magic number, protocol 2 or later.
_LEGACY_MAGIC = (0x1950A86A20F9469CFC6C).to_bytes(10, "little")


def _looks_like_torch_save(path: Path) -> bool:
    """Whether the file starts as torch.save's output does: a zip archive or the legacy magic number."""
    try:
        with path.open("rb") as file:
            head = file.read(32)
    except OSError:
        return True  # let torch's own reason stand
    return head.startswith(b"PK") or _LEGACY_MAGIC in head


def _empty(path: Path) -> bool:
    with suppress(OSError):
        return path.stat().st_size == 0
    return False


def _looks_like_safetensors(path: Path) -> bool:
    """Whether the file starts as a safetensors file, whatever its suffix: an 8-byte little-endian
    header length, then the JSON header's ``{``."""
    try:
        with path.open("rb") as file:
            head = file.read(9)
            size = path.stat().st_size
    except OSError:
        return False
    return len(head) == 9 and head[8:9] == b"{" and 0 < int.from_bytes(head[:8], "little") < min(size, 2**27)


def _cut_short(path: Path) -> bool:
    """Whether the file starts as a zip archive that zipfile cannot open: its central directory, at
    the end, is missing (torch then says only ``Invalid argument`` or ``failed finding central
    directory``)."""
    import zipfile

    try:
        with path.open("rb") as file:
            if not file.read(4).startswith(b"PK"):
                return False
        with zipfile.ZipFile(path):
            return False
    except (OSError, zipfile.BadZipFile):
        return True


def _is_pickled_module(path: Path) -> bool:
    """Whether a torch.save archive pickles an nn.Module: its state has ``_modules`` and ``_parameters``.

    Only the bytes are searched: nothing is unpickled.
    """
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            name = next((n for n in archive.namelist() if n.endswith("data.pkl")), None)
            if name is None or archive.getinfo(name).file_size > 64 << 20:
                return False
            data = archive.read(name)
    except (OSError, zipfile.BadZipFile, ValueError, RuntimeError):
        return False
    return b"_modules" in data and b"_parameters" in data


def _read_safetensors(path: Path) -> dict[str, Tensor]:
    try:
        from safetensors.torch import load_file
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


@dataclass(frozen=True)
class Layout:
    """Which library's key names a checkpoint used, and what reading it changed.

    Attributes:
        name: ``torchvision``, ``timm`` or ``MONAI`` (torchvision's and timm's names are the same;
            timm is told by its deep stem or blur-pool filters).
        changes: one line per kind of change (a stripped prefix, renamed keys, dropped buffers).
        dropped: the keys left out (old timm blur-pool filters: constants, not weights).
    """

    name: str
    changes: tuple[str, ...] = ()
    dropped: tuple[str, ...] = ()

    def describe(self) -> str:
        """One line for the report: the layout, then what was changed to read it."""
        done = "; ".join(self.changes)
        return f"{self.name} layout" + (f" ({done})" if done else "")


# MONAI names a dense layer's modules `denselayerJ.layers.norm1` and its classifier `class_layers.out`.
_MONAI_LAYER = re.compile(r"^(features\.denseblock\d+\.denselayer\d+)\.layers\.")
_MONAI_CLASSIFIER = "class_layers.out."
# timm < 1.0 saved its blur pools' fixed filters; they are constants (timm 1.0 no longer saves them).
_BLUR_FILTER = re.compile(r"^features\.(?:pool0\.1|transition\d+\.pool)\.filt$")
_TIMM_DEEP_STEM = "features.conv1.weight"


def canonical_state(state: Mapping[str, Tensor]) -> tuple[dict[str, Tensor], Layout]:
    """``state`` with torchvision's key names, and the layout it came in.

    Accepts the wrappers training code leaves: one common prefix before ``features.`` (DDP's
    ``module.``, Lightning's ``model.``, both), MONAI's names, old torchvision names (``norm.1``)
    and old timm blur-pool filters (dropped). Nothing else is renamed, so a key of another network
    still shows up as unexpected.
    """
    out = dict(state)
    changes: list[str] = []
    prefix = _common_prefix(out)
    if prefix:
        out = {key.removeprefix(prefix): value for key, value in out.items()}
        changes.append(f"stripped the prefix {prefix!r}")
    monai = any(_MONAI_LAYER.match(key) or key.startswith(_MONAI_CLASSIFIER) for key in out)
    if monai:
        out = {_MONAI_LAYER.sub(r"\1.", key).replace(_MONAI_CLASSIFIER, "classifier.", 1): v for key, v in out.items()}
        changes.append("renamed '.layers.' and 'class_layers.out.'")
    old = sum(bool(_OLD_TORCHVISION.match(key)) for key in out)
    if old:
        out = {_OLD_TORCHVISION.sub(r"\1\2.\3", key): value for key, value in out.items()}
        changes.append(f"renamed {old} old torchvision keys (norm.1 -> norm1)")
    dropped = tuple(key for key in out if _BLUR_FILTER.match(key))
    if dropped:
        out = {key: value for key, value in out.items() if key not in dropped}
        changes.append(f"dropped {len(dropped)} blur-pool filter{'' if len(dropped) == 1 else 's'} (constants)")
    timm = bool(dropped) or _TIMM_DEEP_STEM in out
    name = "MONAI" if monai else "timm" if timm else "torchvision"
    return out, Layout(name, tuple(changes), dropped)


def _common_prefix(state: Mapping[str, Tensor]) -> str:
    """The prefix every key has before ``features.`` (``module.``, ``model.``, ``module.model.``), or ''."""
    first = next((key for key in state if "features." in key), "")
    at = first.find("features.")
    if at <= 0 or first[at - 1] != ".":
        return ""
    prefix = first[:at]
    return prefix if all(key.startswith(prefix) for key in state) else ""


def check_state_dict(
    state: Mapping[str, Tensor], ir: IR, file: str = "<state_dict>", keys: Collection[str] | None = None
) -> list[Problem]:
    """Every key of ``state`` that does not fit the IR's modules, by name: missing, unexpected or
    mis-shaped. With ``keys`` (a backbone's own weights) only those must be there; what else is
    there must still be the network's, of its shapes."""
    where = Location(file)
    expected = ir.state_shapes()
    required = expected if keys is None else {key: shape for key, shape in expected.items() if key in keys}
    # num_batches_tracked may be absent (checkpoints older than torch 0.4.1); nothing reads it at inference.
    problems = [
        Problem(where, "", f"missing key {key} (shape {list(shape)})")
        for key, shape in required.items()
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
