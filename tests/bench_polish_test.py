"""`bench`'s rough edges from a new-user trial: --strict, --device cuda's exit status, nothing stray
on stderr, and a floor that stays a lower bound (the convolution rate is the best of several
measurements). Timing itself is not tested: the runs are replaced by fixed results."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from densenet_spec import bench
from densenet_spec.bench import BenchConfig, BenchResult
from densenet_spec.cli import app

RUNNER = CliRunner()
TINY = "name: tiny\ngrowth_rate: 4\nblocks: [1, 1]\nstem: cifar\ninput: {size: 8}\nnum_classes: 3\n"
ODD = "name: odd\ngrowth_rate: 12\nblocks: [5, 5]\ncompression: 0.3\ninput: {size: 32}\nstem: cifar\n"
"""A valid spec with a warning (a transition keeping 25.2 maps)."""


@pytest.fixture
def fixed_runs(monkeypatch: pytest.MonkeyPatch) -> list[BenchConfig]:
    """``bench`` without running anything: each configuration gets a fixed result (10 ms a step,
    a floor of 2 ms); the configurations asked for are recorded."""
    asked: list[BenchConfig] = []

    def fake(config: BenchConfig, progress: object = None) -> BenchResult:
        asked.append(config)
        return BenchResult(config, [0.01, 0.01], macs=10**6, setup_s=0.1, peak_memory=2**26, conv_gflops=8.0)

    monkeypatch.setattr(bench, "run_isolated", fake)
    return asked


def _spec(tmp_path: Path, text: str = TINY) -> str:
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    return str(path)


# 9. --strict, and --device cuda without CUDA


def test_bench_strict_refuses_a_spec_with_warnings(tmp_path: Path, fixed_runs: list[BenchConfig]) -> None:
    spec = _spec(tmp_path, ODD)
    strict = RUNNER.invoke(app, ["bench", spec, "--strict", "-f", "json"])
    assert strict.exit_code == 1 and strict.stdout == ""
    assert "compression: features.transition1: 0.3 x 84 = 25.2 maps" in strict.stderr
    assert "warning:" not in strict.stderr and fixed_runs == []  # nothing was run
    lenient = RUNNER.invoke(app, ["bench", spec, "-f", "json"])
    assert lenient.exit_code == 0 and "warning:" in lenient.stderr and len(fixed_runs) == 1


def test_bench_cuda_without_a_device_is_a_usage_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    result = RUNNER.invoke(app, ["bench", _spec(tmp_path), "--device", "cuda"])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: --device cuda: no CUDA device here")
    assert len(result.stderr.splitlines()) == 1


# 12. nothing stray on stderr; the floor


@pytest.mark.parametrize("form", ["json", "table"])
def test_bench_writes_nothing_else_to_stderr(tmp_path: Path, fixed_runs: list[BenchConfig], form: str) -> None:
    result = RUNNER.invoke(app, ["bench", _spec(tmp_path), "-f", form])
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""
    if form == "json":
        assert json.loads(result.stdout)["floor_s"] == pytest.approx(2 * 10**6 * 8 / 8e9)


def test_bench_table_has_no_trailing_whitespace(tmp_path: Path, fixed_runs: list[BenchConfig]) -> None:
    spec = _spec(tmp_path)
    result = RUNNER.invoke(app, ["bench", spec])
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"bench {spec}"
    assert [line for line in lines if line != line.rstrip()] == []
    row = next(line for line in lines if line.startswith("│ eval cpu b8"))
    assert "2.0 ms (20%)" in row


def test_a_floor_above_the_median_has_no_share() -> None:
    from densenet_spec.cli import _floor_text

    assert _floor_text(0.002, 0.010) == "2.0 ms (20%)"
    assert _floor_text(0.021, 0.002) == "21.0 ms (> median)"  # not "1050%"
    assert _floor_text(None, 0.002) == "-"


def test_the_rate_is_the_best_of_several_measurements() -> None:
    """Load only slows a measurement down: the fastest of the repeats is the rate. A fake clock
    makes each step take its scripted time: the second measurement is the fastest."""
    step_times = iter([0.3] * 3 + [0.1] * 3 + [0.2] * 3 + [0.5] * 3)
    now = [0.0]
    steps: list[int] = []

    def clock() -> float:
        return now[0]

    def step() -> None:
        now[0] += next(step_times)
        steps.append(1)

    rate = bench.best_rate(step, lambda: None, work=6.0, repeats=4, seconds=0.0, clock=clock)
    assert len(steps) == 12  # at least three steps a measurement
    assert rate == pytest.approx(6.0 * 3 / 0.3)  # the 0.1 s steps, not the mean of all


def test_each_measurement_runs_for_its_time() -> None:
    now = [0.0]

    def step() -> None:
        now[0] += 0.01

    syncs: list[int] = []
    rate = bench.best_rate(step, lambda: syncs.append(1), work=1.0, repeats=2, seconds=0.1, clock=lambda: now[0])
    assert rate == pytest.approx(100.0)
    assert len(syncs) == 2  # the device is synchronised before each measurement ends


def test_no_measurable_time_gives_no_rate() -> None:
    assert bench.best_rate(lambda: None, lambda: None, work=1.0, repeats=3, seconds=0.0, clock=lambda: 1.0) == 0.0
    result = BenchResult(BenchConfig("x"), [0.01], macs=10**6, setup_s=0.0, conv_gflops=0.0)
    assert result.floor_s is None  # shown as "-"


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ('Traceback (most recent call last):\n  File "x"\nRuntimeError: shapes do not fit\n', "shapes do not fit"),
        ('Overflow when unpacking long long\nException raised from x at y\nframe #16: z\n"', "not enough memory"),
        (
            "[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory",
            "not enough memory",
        ),
        ("\n\n", "failed"),
    ],
)
def test_a_failed_benchmark_is_one_line_in_the_tools_words(text: str, said: str) -> None:
    from densenet_spec.cli import _bench_failure

    line = _bench_failure(text, 99)
    assert said in line and "\n" not in line and line != '"'


def test_bench_batch_has_a_ceiling() -> None:
    result = CliRunner().invoke(app, ["bench", "densenet-40-k12", "--batch", "99999999999999999999999"])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: --batch:") and result.stderr.count("\n") == 1


def test_optimized_bench_counts_the_optimized_networks_macs() -> None:
    from densenet_spec import as_ir, optimize

    _, macs = bench.make_step(BenchConfig(spec="densenet-40-k12", batch=1, optimize=True))
    assert macs == optimize(as_ir("densenet-40-k12"))[0].macs < as_ir("densenet-40-k12").macs


def test_a_child_killed_for_memory_is_said_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The kernel's out-of-memory killer ends the child with SIGKILL and no message: it was
    'bench: benchmark child failed:' with nothing after the colon."""
    import sys

    from densenet_spec.cli import _bench_failure

    killer = tmp_path / "python"
    killer.write_text("#!/bin/sh\nkill -9 $$\n")
    killer.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(killer))
    with pytest.raises(RuntimeError) as info:
        bench._run_child(BenchConfig(spec="densenet-40-k12"), {}, None)
    assert _bench_failure(str(info.value), 100_000) == (
        "not enough memory for a batch of 100,000 on this machine: use a smaller --batch"
    )
