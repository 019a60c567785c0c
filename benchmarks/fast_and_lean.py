"""The speed and memory targets, each printed as a ratio with PASS or FAIL, from one run.

Train (densenet121 batch 8 and densenet-bc-100-k12 batch 64, SGD steps): the reference is a
torchvision-structured network (each layer concatenates its inputs; memory_efficient checkpoints
concat-BN-ReLU-conv1 as torchvision does), defined here so that it does not follow this project's
runtime. Ours trains in channels_last; memory_efficient recomputes concat-BN-ReLU and keeps the 1x1
output. Step times alternate in one process; the tensors alive at the peak of a step (and the
process's peak RSS) come from a child process per variant.

Eval (densenet121 batch 8, forward): optimize_for_inference against the eager model and against
onnxruntime on the project's plain ONNX of the same weights; onnxruntime on the --optimize ONNX
against onnxruntime on torch.onnx.export's graph of the torchvision-structured model. Each pair
runs alternately in rounds of its own, with the page faults of a call printed beside each time;
onnxruntime with intra-op spinning off, so that its idle threads do not take the cores from the
contender that runs next. 2 threads each. Then optimize_for_inference and onnxruntime on the plain
ONNX each alone in a fresh process, as a serving process runs them (printed, not a target: not
alternated).

Run: .venv/bin/python benchmarks/fast_and_lean.py [--only train|eval] [--repeat 8]
torch.onnx.export needs onnxscript (the bench extra: pip install -e '.[bench]'); without it that
target is reported as not measured.
"""

from __future__ import annotations

import argparse
import importlib.util
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import torch
from torch.utils.checkpoint import checkpoint

from densenet_spec import build_model
from densenet_spec.api import as_ir
from densenet_spec.backends.torch_module import DenseBlock, DenseLayer, DenseNet
from densenet_spec.bench import (
    BenchConfig,
    child_peaks,
    make_step,
    ort_session,
    sgd_step,
    step_peaks,
    time_alternately,
)

THREADS = 2
TRAIN_CASES = (("densenet121", 8), ("densenet-bc-100-k12", 64))
TRAIN_VARIANTS = {
    "torchvision": "reference: concatenation, default layout",
    "torchvision_memory_efficient": "reference: checkpointed concat-BN-ReLU-conv1",
    "torchvision_channels_last": "(reference in channels_last: what the layout alone gives)",
    "ours": "build_model(channels_last=True)",
    "ours_memory_efficient": "build_model(channels_last=True, memory_efficient=True)",
    "ours_memory_efficient_nchw": "(memory_efficient in the default layout: the shared buffer)",
}


class TorchvisionLayer(DenseLayer):
    """torchvision's dense layer: concatenate, then the ops; memory_efficient checkpoints
    concat-norm-relu-conv1 (the 1x1 convolution is run again in the backward pass)."""

    def forward(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        norm, relu, conv, *rest = self

        def bottleneck(*tensors: torch.Tensor) -> torch.Tensor:
            return conv(relu(norm(torch.cat(tensors, 1))))  # type: ignore[no-any-return]

        if self.memory_efficient and self.training:
            out = checkpoint(bottleneck, *inputs, use_reentrant=False)
        else:
            out = bottleneck(*inputs)
        for module in rest:
            out = module(out)
        return out  # type: ignore[no-any-return]


def torchvision_model(spec: str, memory_efficient: bool = False) -> DenseNet:
    """The spec's network with the same weights as ours, run the way torchvision runs it."""
    model = build_model(spec, seed=0, memory_efficient=memory_efficient)
    for module in model.modules():
        if isinstance(module, DenseLayer):
            module.__class__ = TorchvisionLayer
        elif isinstance(module, DenseBlock):
            module.shared_buffer = False
    return model


def train_step(spec: str, batch: int, variant: str) -> Callable[[], None]:
    """One SGD step of ``spec`` in the variant named (a key of TRAIN_VARIANTS)."""
    lean = "memory_efficient" in variant
    channels_last = variant in ("ours", "ours_memory_efficient", "torchvision_channels_last")
    if variant.startswith("torchvision"):
        model = torchvision_model(spec, lean)
        if channels_last:
            model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    else:
        model = build_model(spec, seed=0, memory_efficient=lean, channels_last=channels_last)
    ir = as_ir(spec)
    x = torch.randn(batch, ir.info.input_channels, *ir.info.input_size)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, ir.info.num_classes, (batch,))
    return sgd_step(model.train(), x, labels)


def alternate(steps: dict[str, Callable[[], None]], repeat: int, warmup: int = 1) -> dict[str, float]:
    """Median seconds of each step, run round-robin so that drift in the machine hits all alike."""
    times = time_alternately(list(steps.values()), warmup, repeat)
    return {name: statistics.median(t) for name, t in zip(steps, times, strict=True)}


def verdict(name: str, ratio: float, target: float, better: str) -> str:
    met = ratio <= target if better == "lower" else ratio >= target
    sign = "<=" if better == "lower" else ">="
    return f"  {name:66s} {ratio:5.2f}x  (target {sign} {target:.2f}x)  {'PASS' if met else 'FAIL'}"


# ----------------------------------------------------------------------------- train


def _child(argv: list[str]) -> None:
    """Run steps of one train variant; print the peak of live tensors in a step and the peak RSS."""
    spec, batch, variant = argv[0], int(argv[1]), argv[2]
    torch.set_num_threads(THREADS)
    print(*step_peaks(train_step(spec, batch, variant)))


def train_targets(spec: str, batch: int, repeat: int) -> list[str]:
    print(f"\n== train step (SGD), {spec}, batch {batch}, {THREADS} threads")
    torch.set_num_threads(THREADS)
    steps = {variant: train_step(spec, batch, variant) for variant in TRAIN_VARIANTS}
    median = alternate(steps, repeat)
    del steps
    peaks = {variant: child_peaks(__file__, spec, str(batch), variant) for variant in TRAIN_VARIANTS}
    for variant, what in TRAIN_VARIANTS.items():
        tensors, rss = peaks[variant]
        print(
            f"{variant:29s} {median[variant] * 1e3:7.0f} ms  tensors at peak {tensors / 2**20:6.0f} MiB"
            f"  peak RSS {rss / 2**30:5.2f} GiB  {what}"
        )
    plain = median["torchvision"]
    tv_lean_peak = peaks["torchvision_memory_efficient"][0]
    return [
        verdict(f"{spec} b{batch}: ours plain / torchvision plain (time)", median["ours"] / plain, 0.9, "lower"),
        verdict(
            f"{spec} b{batch}: ours memory_efficient / torchvision plain (time)",
            median["ours_memory_efficient"] / plain,
            1.0,
            "lower",
        ),
        verdict(
            f"{spec} b{batch}: ours memory_efficient / torchvision m_e (peak)",
            peaks["ours_memory_efficient"][0] / tv_lean_peak,
            1.0,
            "lower",
        ),
    ]


# ----------------------------------------------------------------------------- eval


def _torch_export_step(spec: str, batch: int, folder: Path) -> Callable[[], None] | None:
    """onnxruntime on torch.onnx.export's graph of the torchvision-structured model, or None
    without onnxscript (which torch.onnx.export's default exporter needs)."""
    if importlib.util.find_spec("onnxscript") is None:
        return None
    model = torchvision_model(spec).eval()
    ir = as_ir(spec)
    x = torch.randn(batch, ir.info.input_channels, *ir.info.input_size)
    path = folder / "torch_export.onnx"
    torch.onnx.export(model, (x,), str(path), input_names=["input"], output_names=["logits"], verbose=False)
    session = ort_session(str(path), THREADS)
    feed = {session.get_inputs()[0].name: x.numpy()}
    return lambda: session.run(None, feed)


EAGER, FAST = "eager (torchvision structure)", "optimize_for_inference"
ORT_PLAIN, ORT_OURS, ORT_THEIRS = (
    "onnxruntime, plain ONNX",
    "onnxruntime, --optimize ONNX",
    "onnxruntime, torch.onnx.export's graph",
)


def eval_targets(spec: str, batch: int, repeat: int) -> list[str]:
    """Each target's two contenders alternated on their own: a third contender in the same rounds
    changes what the allocator hands back (the eager network's large, short-lived tensors made
    glibc return memory that the next forward faulted in again, 18,000-30,000 faults a call), so
    the pair's ratio would measure the neighbour as much as the pair."""
    print(f"\n== eval forward, {spec}, batch {batch}, {THREADS} threads, each pair alternated")
    steps = {name: make_step(config)[0] for name, config in _eval_configs(spec, batch).items()}
    with tempfile.TemporaryDirectory() as tmp:
        exported = _torch_export_step(spec, batch, Path(tmp))
        if exported is not None:
            steps[ORT_THEIRS] = exported
        lines = [
            _pair(steps, EAGER, FAST, "optimize_for_inference vs eager (speed-up)", 1.4, repeat),
            _pair(steps, ORT_PLAIN, FAST, "optimize_for_inference vs onnxruntime plain ONNX", 1.1, repeat),
        ]
        name = "--optimize ONNX vs torch.onnx.export's, in onnxruntime"
        if exported is None:
            lines.append(f"  {name}: not measured (no onnxscript)")
        else:
            lines.append(_pair(steps, ORT_THEIRS, ORT_OURS, name, 1.15, repeat))
    del steps
    print("  each alone in a fresh process (what a serving process sees; not alternated):")
    for contender in (FAST, ORT_PLAIN):
        seconds, faults = _fresh(spec, batch, contender)
        print(f"  {contender:38s} {seconds * 1e3:7.1f} ms  {faults:6d} page faults a call")
    return lines


def _eval_configs(spec: str, batch: int) -> dict[str, BenchConfig]:
    base = BenchConfig(spec, batch, threads=THREADS)
    return {
        EAGER: base,
        FAST: replace(base, optimize=True),
        ORT_PLAIN: replace(base, onnxruntime=True),
        ORT_OURS: replace(base, onnxruntime=True, optimize=True),
    }


def _fresh(spec: str, batch: int, contender: str) -> tuple[float, int]:
    """Median seconds and page faults of a call of ``contender`` in a new process (glibc's
    thresholds as a program starts with them), after three warm-up calls."""
    command = [sys.executable, __file__, "--eval-child", spec, str(batch), contender]
    seconds, faults = subprocess.run(command, capture_output=True, text=True, check=True).stdout.split()[-2:]
    return float(seconds), int(faults)


def _eval_child(argv: list[str]) -> None:
    spec, batch, contender = argv[0], int(argv[1]), argv[2]
    torch.set_num_threads(THREADS)
    step = make_step(_eval_configs(spec, batch)[contender])[0]
    for _ in range(3):
        step()
    times, faults = [], []
    for _ in range(10):
        start = time.perf_counter()
        faults.append(minor_faults(step))
        times.append(time.perf_counter() - start)
    print(statistics.median(times), int(statistics.median(faults)))


def _pair(steps: dict[str, Callable[[], None]], slow: str, fast: str, name: str, target: float, repeat: int) -> str:
    """Alternate ``slow`` and ``fast``; print their medians and page faults; the verdict on slow/fast."""
    median = alternate({slow: steps[slow], fast: steps[fast]}, repeat, warmup=2)
    for contender in (slow, fast):
        faults = minor_faults(steps[contender])
        print(f"  {contender:38s} {median[contender] * 1e3:7.1f} ms  {faults:6d} page faults a call")
    return verdict(name, median[slow] / median[fast], target, "higher")


def minor_faults(step: Callable[[], None]) -> int:
    """Minor page faults during one more call of ``step``: memory the allocator got back from
    the system, which the kernel maps and zeroes again."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    step()
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        _child(sys.argv[2:])
        return
    if sys.argv[1:2] == ["--eval-child"]:
        _eval_child(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=8, help="timed runs of each contender")
    parser.add_argument("--only", choices=["eval", "train"], help="run one half")
    args = parser.parse_args()
    verdicts = []
    if args.only != "train":
        verdicts += eval_targets("densenet121", 8, args.repeat)
    if args.only != "eval":
        for spec, batch in TRAIN_CASES:
            verdicts += train_targets(spec, batch, max(3, args.repeat // 2))
    print("\n== targets")
    print("\n".join(verdicts))


if __name__ == "__main__":
    main()
