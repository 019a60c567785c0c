"""Untrusted checkpoints: every refusal names the file and the key, never suggests an unsafe load."""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import pytest
import torch

from densenet_spec import SpecError, compile_spec, load_spec
from densenet_spec.interop import load_weights
from densenet_spec.weights import read_checkpoint


def _refusal(path: Path) -> SpecError:
    with pytest.raises(SpecError) as info:
        read_checkpoint(path)
    for problem in info.value.problems:
        assert str(problem).startswith(f"{path}: "), str(problem)
        assert "weights_only" not in str(problem) and "safe_globals" not in str(problem)
    return info.value


def _saved(tmp_path: Path, obj: Any, name: str = "ckpt.pt") -> Path:
    path = tmp_path / name
    torch.save(obj, path)
    return path


class _RunsCode:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("save", ["torch", "pickle"])
def test_code_running_pickle_is_refused_without_unsafe_advice(tmp_path: Path, save: str) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    if save == "torch":
        torch.save({"w": _RunsCode(marker)}, path)
    else:
        path.write_bytes(pickle.dumps({"w": _RunsCode(marker)}))
    error = _refusal(path)
    # torch.save's archive is read and refused; a bare pickle is not a torch checkpoint at all.
    expected = "cannot read the checkpoint safely" if save == "torch" else "not a torch checkpoint"
    assert expected in str(error)
    assert not marker.exists()


def test_whole_pickled_model_gets_state_dict_advice(tmp_path: Path) -> None:
    path = _saved(tmp_path, torch.nn.Sequential(torch.nn.Linear(2, 2)))
    error = _refusal(path)
    assert "whole pickled model (torch.nn.modules.container.Sequential)" in str(error)
    assert "torch.save(model.state_dict(), PATH)" in str(error)


def test_keys_must_be_strings(tmp_path: Path) -> None:
    error = _refusal(_saved(tmp_path, {1: torch.zeros(2), "ok": torch.zeros(1)}))
    assert [p.message for p in error.problems] == ["key 1 (int) is not a string: a state_dict maps names to tensors"]


@pytest.mark.parametrize(
    ("tensor", "fragment"),
    [
        (torch.zeros(3).to_sparse(), "w is a sparse_coo tensor; save dense tensors"),
        (torch.zeros(3, device="meta"), "w is a meta tensor: it has a shape but no values"),
        (torch.tensor([1.0, float("nan"), 2.0]), "w holds 1 NaN or infinite values (of 3)"),
        (torch.tensor([float("inf"), -float("inf")], dtype=torch.float16), "w holds 2 NaN or infinite values"),
        (torch.zeros(2, dtype=torch.int64), "w has dtype int64; weights must be floating point"),
        (torch.zeros(2, dtype=torch.bool), "w has dtype bool;"),
        (torch.zeros(2, dtype=torch.complex64), "w has dtype complex64;"),
        (torch.zeros(2, dtype=torch.float8_e4m3fn), "w has dtype float8_e4m3fn;"),
        (torch.zeros(2, dtype=torch.uint8), "w has dtype uint8;"),
    ],
)
def test_values_that_are_not_dense_finite_floats_are_refused(
    tmp_path: Path, tensor: torch.Tensor, fragment: str
) -> None:
    error = _refusal(_saved(tmp_path, {"w": tensor, "fine": torch.ones(2)}))
    assert len(error.problems) == 1
    assert fragment in error.problems[0].message


def test_a_negative_running_variance_is_refused(tmp_path: Path) -> None:
    """Its square root made every output NaN, with the file accepted."""
    state = {"features.norm5.running_var": torch.tensor([1.0, -0.5, -2.0]), "norm.weight": torch.tensor([-1.0])}
    error = _refusal(_saved(tmp_path, state))
    assert [p.message for p in error.problems] == [
        "features.norm5.running_var holds 2 negative variances (of 3); a variance is never below 0"
    ]
    noise = {"features.norm5.running_var": torch.tensor([1.0, -1e-9])}  # rounding in a converted checkpoint
    assert read_checkpoint(_saved(tmp_path, noise)).keys() == noise.keys()


def test_an_empty_checkpoint_is_one_line(tmp_path: Path) -> None:
    small = compile_spec(load_spec("densenet-40-k12"))
    with pytest.raises(SpecError) as info:
        load_weights(_saved(tmp_path, {}), small)
    assert [p.message for p in info.value.problems] == ["the checkpoint holds no tensors (an empty state_dict)"]


def test_clamp_bounds_may_be_infinite_but_not_nan(tmp_path: Path) -> None:
    bounds = {"norm1.lo": torch.tensor([float("-inf"), 0.5]), "norm1.hi": torch.tensor([float("inf"), 2.0])}
    assert read_checkpoint(_saved(tmp_path, bounds)).keys() == bounds.keys()
    error = _refusal(_saved(tmp_path, {"norm1.lo": torch.tensor([float("nan"), 0.0])}))
    assert [p.message for p in error.problems] == ["norm1.lo holds 1 NaN values (of 2)"]


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_floating_dtypes_and_integer_counters_are_accepted(tmp_path: Path, dtype: torch.dtype) -> None:
    state = {"w": torch.ones(2, dtype=dtype), "features.norm0.num_batches_tracked": torch.tensor(7)}
    assert read_checkpoint(_saved(tmp_path, state))["w"].dtype == dtype


def test_many_bad_entries_are_listed_up_to_a_screenful(tmp_path: Path) -> None:
    error = _refusal(_saved(tmp_path, {f"w{i}": torch.zeros(1, dtype=torch.int8) for i in range(120)}))
    assert len(error.problems) == 51
    assert error.problems[-1].message == "... and 70 more entries like these"


def test_safetensors_checkpoint_is_read(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    path = tmp_path / "w.safetensors"
    save_file({"a": torch.arange(4.0), "b": torch.ones(2, dtype=torch.bfloat16)}, str(path))
    state = read_checkpoint(path)
    assert torch.equal(state["a"], torch.arange(4.0)) and state["b"].dtype == torch.bfloat16


def test_safetensors_values_are_checked_too(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    path = tmp_path / "w.safetensors"
    save_file({"a": torch.tensor([float("nan")]), "b": torch.zeros(2, dtype=torch.int32)}, str(path))
    assert [p.message.split(" ")[0] for p in _refusal(path).problems] == ["a", "b"]


def test_corrupt_safetensors_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "w.safetensors"
    path.write_bytes(b"\xff" * 64)
    assert "not a readable safetensors file (cut short or damaged?)" in str(_refusal(path))


def test_a_safetensors_file_is_read_by_its_content(tmp_path: Path) -> None:
    """Whatever its suffix; cut short, it says so rather than 'cannot read ... safely'."""
    from safetensors.torch import save_file

    path = tmp_path / "w.pt"
    save_file({"w": torch.arange(6.0)}, str(path))
    assert torch.equal(read_checkpoint(path)["w"], torch.arange(6.0))
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(path.read_bytes()[:-8])
    message = _refusal(cut).problems[0].message
    assert message.startswith("not a readable safetensors file (cut short or damaged?)"), message


def test_an_empty_file_says_so(tmp_path: Path) -> None:
    for name in ("w.pt", "w.safetensors"):
        (tmp_path / name).write_bytes(b"")
        assert _refusal(tmp_path / name).problems[0].message.startswith("the file is empty")


@pytest.mark.parametrize("content", [b"hello\n", b"\x80\x04K\x01."])
def test_files_that_are_not_torch_checkpoints_say_so(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "w.pth"
    path.write_bytes(content)
    message = _refusal(path).problems[0].message
    assert message.startswith("not a torch checkpoint (torch.save writes a zip archive")


def test_legacy_torch_save_files_are_read(tmp_path: Path) -> None:
    path = tmp_path / "old.pt"
    torch.save({"w": torch.ones(2)}, path, _use_new_zipfile_serialization=False)
    assert torch.equal(read_checkpoint(path)["w"], torch.ones(2))


@pytest.mark.parametrize("kind", ["folder", "fifo", "missing"])
def test_non_regular_checkpoint_paths_are_refused_without_blocking(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "ckpt.pt"
    if kind == "folder":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)
    message = "no such checkpoint file" if kind == "missing" else "not a regular file"
    assert _refusal(path).problems[0].message == message


def test_wrong_architecture_ends_with_a_summary_line(tmp_path: Path) -> None:
    small = compile_spec(load_spec("densenet-40-k12"))
    other = {f"other.layer{i}.weight": torch.zeros(1) for i in range(5)}
    with pytest.raises(SpecError) as info:
        load_weights(_saved(tmp_path, other), small)
    last = info.value.problems[-1].message
    assert last.startswith("the checkpoint does not fit the spec: ")
    assert "5 unexpected and 0 mis-shaped keys of 5 (a checkpoint of another architecture?)" in last


def test_a_checkpoint_of_another_network_lists_a_screenful(tmp_path: Path) -> None:
    """densenet-bc-100-k12's weights for densenet121: 774 keys do not fit; twenty are listed,
    then how many more, then what the checkpoint is (counting them all)."""
    from densenet_spec import build_model

    path = tmp_path / "bc.pt"
    torch.save(build_model("densenet-bc-100-k12").state_dict(), path)
    with pytest.raises(SpecError) as info:
        load_weights(path, compile_spec(load_spec("densenet121")))
    messages = [problem.message for problem in info.value.problems]
    assert len(messages) == 22 and messages[0].startswith("missing key features.norm0.weight")
    assert messages[20] == "... and 754 more keys that do not fit"
    assert "249 missing, 168 unexpected and 357 mis-shaped keys of 596" in messages[21]


@pytest.mark.parametrize("keep", [5_000, 0.5, -22])
def test_a_checkpoint_cut_short_says_so(tmp_path: Path, keep: float) -> None:
    """An interrupted download: the archive's end (its central directory) is missing. torch says
    only "[Errno 22] Invalid argument" or "failed finding central directory"."""
    whole = _saved(tmp_path, {"w": torch.randn(64, 64)}, "whole.pt").read_bytes()
    cut = int(len(whole) * keep) if isinstance(keep, float) else keep
    path = tmp_path / "cut.pt"
    path.write_bytes(whole[:cut])
    message = _refusal(path).problems[0].message
    assert message.startswith("the checkpoint is cut short or damaged"), message


def test_a_whole_checkpoint_is_not_called_cut_short(tmp_path: Path) -> None:
    path = _saved(tmp_path, {"w": torch.randn(4)}, "whole.pt")
    assert read_checkpoint(path).keys() == {"w"}


def test_a_cut_short_safetensors_file_named_pt_says_what_it_is(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    whole = tmp_path / "whole.safetensors"
    save_file({"w": torch.randn(256)}, str(whole))
    cut = tmp_path / "cut.pt"
    cut.write_bytes(whole.read_bytes()[:400])
    assert _refusal(cut).problems[0].message.startswith("not a readable safetensors file (cut short or damaged?)")


def test_a_cut_short_legacy_checkpoint_says_so(tmp_path: Path) -> None:
    path = tmp_path / "old.pt"
    torch.save({"w": torch.randn(1000)}, path, _use_new_zipfile_serialization=False)
    cut = tmp_path / "cut.pt"
    cut.write_bytes(path.read_bytes()[:2000])
    assert _refusal(cut).problems[0].message.startswith("the checkpoint is cut short or damaged")
