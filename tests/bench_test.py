"""`densenet-spec bench` on a small spec: configurations, formats, errors."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

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


def test_bench_errors_are_clean() -> None:
    runner = CliRunner()
    bad_spec = runner.invoke(app, ["bench", "no-such-spec"])
    assert bad_spec.exit_code == 1 and "no such file or preset" in bad_spec.stderr
    onnx_train = runner.invoke(app, ["bench", SMALL, "--onnxruntime", "--mode", "train", "--repeat", "1"])
    assert onnx_train.exit_code == 1 and "Traceback" not in onnx_train.stderr
    import torch

    if not torch.cuda.is_available():
        no_gpu = runner.invoke(app, ["bench", SMALL, "--device", "cuda"])
        assert no_gpu.exit_code == 1 and "no CUDA device" in no_gpu.stderr


def test_run_here_counts_warmup_apart() -> None:
    result = run_here(BenchConfig(SMALL, batch=1, warmup=2, repeat=3))
    assert len(result.times) == 3
    assert result.spread >= 0
