"""`densenet-spec bench` on a small spec: configurations, formats, errors."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from densenet_spec import bench
from densenet_spec.bench import BenchConfig, run_here
from densenet_spec.cli import app

SMALL = "densenet-40-k12"


def test_bench_json_in_a_child_process_reports_peak_rss() -> None:
    result = CliRunner().invoke(app, ["bench", SMALL, "--batch", "2", "--warmup", "1", "--repeat", "2", "-f", "json"])
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert len(data["times_s"]) == 2
    assert data["median_s"] > 0 and data["images_per_s"] > 0
    assert data["peak_memory_bytes"] > 50 * 2**20  # the child's whole RSS, torch included
    assert data["macs_per_image"] == 264_812_928
    assert data["floor_s"] > 0


@pytest.mark.parametrize(
    "flags",
    [
        ["--mode", "train"],
        ["--mode", "train", "--memory-efficient"],
        ["--optimize"],
        ["--channels-last", "--amp"],
        ["--onnxruntime", "--optimize"],
    ],
    ids=["train", "train-lean", "optimize", "cl-amp", "onnxruntime"],
)
def test_bench_configurations_run(flags: list[str]) -> None:
    args = ["bench", SMALL, "--batch", "2", "--warmup", "0", "--repeat", "1", *flags]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.stderr
    assert "images/s" in result.stdout


def test_bench_compare_prints_both_and_the_ratio() -> None:
    args = ["bench", SMALL, "--batch", "2", "--warmup", "0", "--repeat", "2", "--optimize", "--compare", "-f", "json"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    labels = [r["label"] for r in data["results"]]
    assert labels == ["eval cpu b2 optimize", "eval cpu b2 eager"]
    assert data["ratio"] == pytest.approx(data["results"][1]["median_s"] / data["results"][0]["median_s"])
    assert all(r["peak_memory_bytes"] > 50 * 2**20 for r in data["results"])  # each measured on its own


def test_bench_compare_table_keeps_memory_and_explains_the_columns() -> None:
    args = ["bench", SMALL, "--batch", "1", "--warmup", "0", "--repeat", "1", "--channels-last", "--compare"]
    result = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if line.startswith("│ eval cpu b1")]
    assert len(rows) == 2 and all(" MiB " in row for row in rows)
    caption = " ".join(result.stdout.split())
    assert "floor (MACs): the time this network's multiply-accumulates take" in caption
    assert "setup: seconds spent building" in caption


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--mode", "train", "--optimize"], "error: --optimize is eval-only"),
        (
            ["--onnxruntime", "--compile", "--amp"],
            "error: --compile, --amp set up the PyTorch model, not --onnxruntime's",
        ),
        (
            ["--onnxruntime", "--channels-last"],
            "error: --channels-last sets up the PyTorch model, not --onnxruntime's; drop it",
        ),
        (["--memory-efficient"], "error: --memory-efficient changes training only"),
        (["--compare"], "error: --compare runs the plain configuration beside this one: add what to compare"),
        (["--channels-last"], "error: --channels-last applies to 2-D networks; densenet121-1d is 1-D"),
    ],
    ids=[
        "train-optimize",
        "onnxruntime-torch-options",
        "onnxruntime-channels-last",
        "eval-lean",
        "compare-alone",
        "1-d",
    ],
)
def test_bench_options_that_would_not_run_what_was_asked_are_usage_errors(args: list[str], message: str) -> None:
    spec = "densenet121-1d" if args == ["--channels-last"] else SMALL
    result = CliRunner().invoke(app, ["bench", spec, "--repeat", "1", *args])
    assert result.exit_code == 2, result.stdout
    assert result.stderr.startswith(message) and len(result.stderr.strip().splitlines()) == 1


def test_floor_is_none_past_float_range() -> None:
    from densenet_spec.bench import BenchResult

    huge = BenchResult(BenchConfig(SMALL), [1.0], 10**400, 0.0, conv_gflops=100.0)
    assert huge.floor_s is None
    assert BenchResult(BenchConfig(SMALL, batch=1), [1.0], 10**9, 0.0, conv_gflops=100.0).floor_s == pytest.approx(0.02)


def test_bench_errors_are_clean() -> None:
    runner = CliRunner()
    bad_spec = runner.invoke(app, ["bench", "no-such-spec"])
    assert bad_spec.exit_code == 1 and "no such file or preset" in bad_spec.stderr
    onnx_train = runner.invoke(app, ["bench", SMALL, "--onnxruntime", "--mode", "train", "--repeat", "1"])
    assert onnx_train.exit_code == 2 and "CPU only" in onnx_train.stderr and "Traceback" not in onnx_train.stderr
    import torch

    if not torch.cuda.is_available():
        no_gpu = runner.invoke(app, ["bench", SMALL, "--device", "cuda"])
        assert no_gpu.exit_code == 2 and "no CUDA device" in no_gpu.stderr


def test_run_here_counts_warmup_apart() -> None:
    result = run_here(BenchConfig(SMALL, batch=1, warmup=2, repeat=3))
    assert len(result.times) == 3
    assert result.spread >= 0


def test_bench_compile_reports_compile_time_apart_from_the_steady_state(tmp_path) -> None:  # type: ignore[no-untyped-def]
    spec = tmp_path / "tiny.yaml"
    spec.write_text("name: tiny\ninput: {size: 16}\nstem: cifar\ngrowth_rate: 4\nblocks: [2, 2]\nnum_classes: 3\n")
    args = ["bench", str(spec), "--batch", "2", "--warmup", "1", "--repeat", "2", "--compile", "--mode", "train"]
    table = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
    assert table.exit_code == 0, table.stderr
    header = next(line for line in table.stdout.splitlines() if "configuration" in line)
    assert header.rstrip("┃ ").endswith("compile")
    row = next(line for line in table.stdout.splitlines() if line.startswith("│ train cpu b2"))
    compile_s = float(row.split("│")[-2].split()[0])
    median_ms = float(row.split("│")[2].split()[0])
    assert compile_s * 1e3 > median_ms  # tracing and code generation took longer than a compiled step


@pytest.mark.parametrize("rank", [1, 2, 3])
def test_the_rate_is_measured_on_a_convolution_of_the_network_s_rank(
    rank: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    made: list[int] = []
    for kind in (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d):
        monkeypatch.setattr(kind, "__call__", lambda self, x, _made=made: _made.append(x.dim() - 2) or x)
    assert bench.conv_gflops("cpu", rank, seconds=0.01) > 0
    assert set(made) == {rank}
