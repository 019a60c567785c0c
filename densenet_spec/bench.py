"""Timing a network the way ``densenet-spec bench`` and ``benchmarks/`` do.

A configuration is warmed up, then timed over repeated runs; the result holds every time, so the
median and spread come from one run. On the CPU, peak memory is the peak RSS of a child process
that runs only that benchmark (``python -m densenet_spec.bench CONFIG``, see :data:`CHILD_ENV`);
on CUDA it is the allocator's peak. The floor is the time the network's MACs take at the machine's measured
convolution rate (the best of several measurements, so that load on the machine does not lower it):
what a perfect implementation would approach.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

Mode = Literal["eval", "train"]
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class BenchConfig:
    """What to run; every flag off is the plain eager model."""

    spec: str
    batch: int = 8
    device: str = "cpu"
    mode: Mode = "eval"
    optimize: bool = False
    memory_efficient: bool = False
    channels_last: bool = False
    amp: bool = False
    compile: bool = False
    onnxruntime: bool = False
    warmup: int = 2
    repeat: int = 10
    threads: int | None = None

    def label(self) -> str:
        flags = ("optimize", "memory_efficient", "channels_last", "amp", "compile", "onnxruntime")
        on = [name.replace("_", "-") for name in flags if getattr(self, name)]
        return f"{self.mode} {self.device} b{self.batch}" + (f" {'+'.join(on)}" if on else " eager")

    def baseline(self) -> BenchConfig:
        """The same spec, batch, device and mode with every option off."""
        return BenchConfig(self.spec, self.batch, self.device, self.mode, warmup=self.warmup, repeat=self.repeat)


@dataclass
class BenchResult:
    config: BenchConfig
    times: list[float]
    macs: int
    setup_s: float
    peak_memory: int | None = None
    conv_gflops: float | None = None
    compile_s: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def spread(self) -> float:
        """Half the distance between the fastest and slowest run, relative to the median."""
        return (max(self.times) - min(self.times)) / 2 / self.median

    @property
    def images_per_s(self) -> float:
        return self.config.batch / self.median

    @property
    def floor_s(self) -> float | None:
        """Seconds the MACs take at the measured convolution rate (backward counted as 2x forward)."""
        if not self.conv_gflops:
            return None
        passes = 3 if self.config.mode == "train" else 1
        try:
            return 2 * self.macs * self.config.batch * passes / (self.conv_gflops * 1e9)
        except OverflowError:  # MACs past float range: no floor worth printing
            return None

    def to_json(self) -> dict[str, Any]:
        return {
            "config": asdict(self.config),
            "label": self.config.label(),
            "times_s": self.times,
            "median_s": self.median,
            "spread": self.spread,
            "images_per_s": self.images_per_s,
            "setup_s": self.setup_s,
            "compile_s": self.compile_s,
            "peak_memory_bytes": self.peak_memory,
            "macs_per_image": self.macs,
            "conv_gflops": self.conv_gflops,
            "floor_s": self.floor_s,
            **self.extra,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BenchResult:
        return cls(
            BenchConfig(**data["config"]),
            data["times_s"],
            data["macs_per_image"],
            data["setup_s"],
            data["peak_memory_bytes"],
            data["conv_gflops"],
            data.get("compile_s"),
        )


# ----------------------------------------------------------------------------- building a step


def make_step(config: BenchConfig) -> tuple[Callable[[], None], int]:
    """A function that runs one timed iteration, and the network's MACs per image."""
    import torch

    from .api import as_ir, build_model, optimize, optimize_for_inference

    if config.threads:
        torch.set_num_threads(config.threads)
    ir = as_ir(config.spec)
    device = torch.device(config.device)
    x = torch.randn(config.batch, ir.info.input_channels, *ir.info.input_size)
    optimized = config.optimize and config.mode == "eval"
    macs = optimize(ir)[0].macs if optimized else ir.macs  # what the timed network computes
    if config.onnxruntime:
        return _onnxruntime_step(config, ir, x), macs
    lean, channels_last = config.memory_efficient, config.channels_last
    plain = build_model(ir, seed=0, memory_efficient=lean, channels_last=channels_last).to(device)
    model: torch.nn.Module = optimize_for_inference(plain) if optimized else plain
    x = x.to(device)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    runner: Callable[[torch.Tensor], torch.Tensor] = torch.compile(model) if config.compile else model
    amp = torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.amp)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    if config.mode == "eval":
        model.eval()

        def step() -> None:
            with torch.inference_mode(), amp:
                runner(x)
            sync()

        return step, macs

    model.train()
    labels = torch.randint(0, ir.info.num_classes, (config.batch,), device=device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def train_step() -> None:
        with amp:
            loss = torch.nn.functional.cross_entropy(runner(x), labels)
        loss.backward()  # type: ignore[no-untyped-call]
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        sync()

    return train_step, ir.macs


def _onnxruntime_step(config: BenchConfig, ir: Any, x: Any) -> Callable[[], None]:
    from .api import emit

    if config.mode != "eval" or config.device != "cpu":
        raise ValueError("--onnxruntime runs inference on the CPU only (--mode eval --device cpu)")
    data = emit(ir, "onnx", {"seed": 0, "optimize": config.optimize})
    session = ort_session(data, config.threads)
    feed = {"input": x.numpy()}

    def step() -> None:
        session.run(None, feed)

    return step


def ort_session(model: bytes | str, threads: int | None = None) -> Any:
    """An onnxruntime CPU session whose idle threads sleep instead of spinning.

    A spinning pool keeps its threads busy between runs, taking the cores from whatever runs
    next: a contender timed alternately, or the rest of the program.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


# A typical DenseNet convolution (3x3, 128 -> 32 maps, batch 8) at about 800 positions, per rank:
# a rate measured in another rank misjudges the floor (3x3x3 convs run at 2-3x the 2-D rate on CPU).
_RATE_SIZES = {1: (784,), 2: (28, 28), 3: (9, 9, 9)}


def conv_gflops(device: str = "cpu", rank: int = 2, seconds: float = 0.5, repeats: int = 5) -> float:
    """This machine's rate on a typical DenseNet convolution of the network's rank, in GFLOP/s:
    the best of ``repeats`` measurements of ``seconds / repeats`` each (see :func:`best_rate`)."""
    import math

    import torch

    size = _RATE_SIZES[rank]
    conv = getattr(torch.nn, f"Conv{rank}d")(128, 32, 3, padding=1, bias=False).to(device).eval()
    x = torch.randn(8, 128, *size, device=device)
    flops = 2 * 8 * 32 * 128 * math.prod((3,) * rank) * math.prod(size)

    def sync() -> None:
        if device == "cuda":
            torch.cuda.synchronize()

    with torch.inference_mode():
        conv(x)  # the first call chooses the kernel and allocates: not timed
        sync()
        return best_rate(lambda: conv(x), sync, flops, repeats, seconds / repeats) / 1e9


def best_rate(
    step: Callable[[], object],
    sync: Callable[[], None],
    work: float,
    repeats: int,
    seconds: float,
    clock: Callable[[], float] = time.perf_counter,
    min_runs: int = 3,
) -> float:
    """The highest rate (``work`` per second of ``step``) of ``repeats`` measurements, each of at
    least ``min_runs`` steps and ``seconds``; 0.0 when no time could be measured.

    Other work on the machine (another process, a busy shared core) can only slow a measurement
    down, never speed it up, so the fastest measurement is the closest to what the machine can do:
    one long measurement averaged the disturbances in, and the floor it gave moved with the load
    (0.7 to 21 ms between runs of one small spec) and could exceed the measured time. Several runs
    per measurement keep a single slow or fast call from deciding it.
    """
    best = 0.0
    for _ in range(repeats):
        runs, start = 0, clock()
        while runs < min_runs or clock() - start < seconds:
            step()
            runs += 1
        sync()
        elapsed = clock() - start
        if elapsed > 0:
            best = max(best, work * runs / elapsed)
    return best


def _rank(config: BenchConfig) -> int:
    from .api import as_ir

    return len(as_ir(config.spec).info.input_size)


# ----------------------------------------------------------------------------- running


def time_step(step: Callable[[], None], warmup: int, repeat: int, progress: Progress | None = None) -> list[float]:
    total = warmup + repeat
    times = []
    for i in range(total):
        start = time.perf_counter()
        step()
        if i >= warmup:
            times.append(time.perf_counter() - start)
        if progress:
            progress(i + 1, total)
    return times


def time_alternately(
    steps: Sequence[Callable[[], None]], warmup: int, repeat: int, progress: Progress | None = None
) -> list[list[float]]:
    """The timed runs of each step, run round-robin so that drift in the machine hits all alike."""
    times: list[list[float]] = [[] for _ in steps]
    total = (warmup + repeat) * len(steps)
    done = 0
    for i in range(warmup + repeat):
        for step, runs in zip(steps, times, strict=True):
            (seconds,) = time_step(step, 0, 1)
            if i >= warmup:
                runs.append(seconds)
            done += 1
            if progress:
                progress(done, total)
    return times


def child_peaks(script: str, *args: str) -> tuple[int, int]:
    """(peak bytes of tensors alive during a step, peak RSS) that ``script --child ARGS`` prints,
    run in a process of its own with :data:`CHILD_ENV`'s malloc settings."""
    command = [sys.executable, script, "--child", *args]
    env = {**os.environ, **CHILD_ENV}
    tensors, rss = subprocess.run(command, capture_output=True, text=True, check=True, env=env).stdout.split()
    return int(tensors), int(rss)


def compile_first(config: BenchConfig, step: Callable[[], None]) -> float | None:
    """With ``compile``, run the first step (where torch.compile traces and generates code) and
    return its seconds, so that the warm-up and timed runs measure the steady state alone."""
    if not config.compile:
        return None
    return time_step(step, 0, 1)[0]


def run_here(config: BenchConfig, progress: Progress | None = None) -> BenchResult:
    """Run ``config`` in this process (peak memory only on CUDA)."""
    import torch

    start = time.perf_counter()
    step, macs = make_step(config)
    setup = time.perf_counter() - start
    compiling = compile_first(config, step)
    if config.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = time_step(step, config.warmup, config.repeat, progress)
    peak = torch.cuda.max_memory_allocated() if config.device == "cuda" else None
    rate = conv_gflops(config.device, _rank(config))
    return BenchResult(config, times, macs, setup, peak, rate, compiling)


# glibc keeps freed blocks of the sizes it saw freed lately on its heap, so a process's RSS peak
# depends on the order of past allocations. With a fixed mmap threshold, every tensor above 64 KiB
# is its own mapping, returned when freed: the RSS peak then follows the memory actually in use.
# Those mappings cost page faults, so the times come from a second child with the usual malloc.
CHILD_ENV = {"MALLOC_MMAP_THRESHOLD_": "65536"}


def run_isolated(config: BenchConfig, progress: Progress | None = None) -> BenchResult:
    """Run ``config`` in child processes that do nothing else: times from one, peak RSS from another."""
    result = _run_child(config, {}, progress)
    memory = _run_child(replace(config, warmup=1, repeat=1), CHILD_ENV, None)
    result.peak_memory = memory.peak_memory
    return result


def _run_child(config: BenchConfig, env: dict[str, str], progress: Progress | None) -> BenchResult:
    command = [sys.executable, "-m", "densenet_spec.bench", json.dumps(asdict(config))]
    child = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, **env}
    )
    assert child.stderr is not None and child.stdout is not None
    errors = []
    for line in child.stderr:
        if line.startswith("progress "):
            done, total = map(int, line.split()[1].split("/"))
            if progress:
                progress(done, total)
        else:
            errors.append(line)
    output = child.stdout.read()
    status = child.wait()
    if status == -signal.SIGKILL and not "".join(errors).strip():  # the kernel's out-of-memory killer says nothing
        raise RuntimeError(
            "MemoryError: the benchmark process was killed (SIGKILL), which the system does when it runs out of memory"
        )
    if status != 0:
        raise RuntimeError("benchmark child failed:\n" + "".join(errors[-20:]))
    return BenchResult.from_json(json.loads(output))


def run_compare(
    config: BenchConfig, other: BenchConfig, progress: Progress | None = None
) -> tuple[BenchResult, BenchResult]:
    """Time two configurations alternately, so that drift in the machine affects both alike."""
    results = []
    steps = []
    for cfg in (config, other):
        start = time.perf_counter()
        step, macs = make_step(cfg)
        setup = time.perf_counter() - start
        steps.append(step)
        results.append(BenchResult(cfg, [], macs, setup, compile_s=compile_first(cfg, step)))
    for result, times in zip(results, time_alternately(steps, config.warmup, config.repeat, progress), strict=True):
        result.times = times
    del steps  # free both models before measuring memory
    rate = conv_gflops(config.device, _rank(config))
    first, second = (replace(result, conv_gflops=rate, peak_memory=peak_memory(result.config)) for result in results)
    return first, second


def peak_memory(config: BenchConfig) -> int | None:
    """The peak memory of one step of ``config`` alone, measured as :func:`run_isolated` and
    :func:`run_here` do (a child's peak RSS on the CPU, the allocator's peak on CUDA).

    :func:`run_compare` times two models in one process, where neither's peak can be told apart;
    this measures each on its own afterwards, so that a comparison keeps its memory column.
    """
    once = replace(config, warmup=1, repeat=1)  # a train step allocates its optimizer state in the first run
    if config.device == "cpu":
        return _run_child(once, CHILD_ENV, None).peak_memory
    import torch

    torch.cuda.empty_cache()
    step, _ = make_step(once)
    torch.cuda.reset_peak_memory_stats()
    time_step(step, once.warmup, once.repeat)
    peak = torch.cuda.max_memory_allocated()
    del step
    torch.cuda.empty_cache()
    return peak


def peak_rss() -> int:
    """This process's peak resident set, in bytes.

    ``VmHWM`` belongs to the process's current memory map; ``getrusage``'s ``ru_maxrss`` can
    instead carry over the parent's resident set from before ``exec``.
    """
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kB on Linux


def sgd_step(model: Any, x: Any, labels: Any) -> Callable[[], None]:
    """One training step (cross-entropy, SGD with momentum) of ``model`` on a fixed batch."""
    import torch

    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def step() -> None:
        loss = torch.nn.functional.cross_entropy(model(x), labels)
        loss.backward()  # type: ignore[no-untyped-call]
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def step_peaks(step: Callable[[], None], warmup: int = 3) -> tuple[int, int]:
    """(peak bytes of tensors alive during one ``step``, this process's peak RSS), after ``warmup`` steps.

    The tensor peak is replayed from the profiler's allocation events; the RSS is read before the
    profiler adds its own memory.
    """
    from torch.profiler import ProfilerActivity, profile

    for _ in range(warmup):
        step()
    rss = peak_rss()
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    events = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events() if e.name() == "[memory]")
    live = peak = 0
    for _, nbytes in events:
        live += nbytes
        peak = max(peak, live)
    return peak, rss


def _child_main(argv: list[str]) -> None:
    config = BenchConfig(**json.loads(argv[0]))

    def report(done: int, total: int) -> None:
        print(f"progress {done}/{total}", file=sys.stderr, flush=True)

    result = run_here(config, report)
    if result.peak_memory is None:
        result.peak_memory = peak_rss()
    print(json.dumps(result.to_json()))


if __name__ == "__main__":
    _child_main(sys.argv[1:])
