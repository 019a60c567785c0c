"""Issue targets for speed and memory, as side-by-side ratios from one run (densenet121, batch 8).

Eval: the optimised model (optimize_for_inference) against the unoptimised torchvision-structured
model, timed alternately; onnxruntime on the same weights, plain and --optimize ONNX.
Train: plain, memory_efficient (recompute concat-BN-ReLU, keep the 1x1 output) and
torchvision-style checkpointing (recompute the 1x1 convolution too): step times alternated in one
process, peak RSS each from a child process of its own.

Run: .venv/bin/python benchmarks/fast_and_lean.py [--spec densenet121] [--batch 8] [--repeat 10]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from collections.abc import Callable
from dataclasses import asdict

import torch
from torch.utils.checkpoint import checkpoint

from densenet_spec import build_model
from densenet_spec.backends.torch_module import DenseLayer
from densenet_spec.bench import CHILD_ENV, BenchConfig, BenchResult, run_compare, sgd_step, step_peaks, time_step


class TorchvisionStyleLayer(DenseLayer):
    """torchvision's memory_efficient: checkpoint concat-BN-ReLU-conv1x1, recomputing the conv too."""

    def forward(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        if not (self.memory_efficient and self.training):
            return super().forward(inputs)
        norm, relu, conv, *rest = self

        def bottleneck(*tensors: torch.Tensor) -> torch.Tensor:
            return conv(relu(norm(torch.cat(tensors, 1))))  # type: ignore[no-any-return]

        out = checkpoint(bottleneck, *inputs, use_reentrant=False)
        for module in rest:
            out = module(out)
        return out  # type: ignore[no-any-return]


def train_step(spec: str, batch: int, variant: str) -> Callable[[], None]:
    """One SGD step of ``spec``: plain, memory_efficient (ours) or torchvision-style checkpointing."""
    model = build_model(spec, seed=0, memory_efficient=variant != "plain").train()
    if variant == "torchvision_style":
        for module in model.modules():
            if isinstance(module, DenseLayer):
                module.__class__ = TorchvisionStyleLayer
    ir = model.ir
    x = torch.randn(batch, ir.info.input_channels, *ir.info.input_size)
    labels = torch.randint(0, ir.info.num_classes, (batch,))
    return sgd_step(model, x, labels)


def _child(argv: list[str]) -> None:
    """Run steps of one train variant; print the peak of live tensors in a step and the peak RSS."""
    spec, batch, variant = argv[0], int(argv[1]), argv[2]
    torch.set_num_threads(2)
    print(*step_peaks(train_step(spec, batch, variant)))


def _peaks(spec: str, batch: int, variant: str) -> tuple[int, int]:
    """(peak bytes of tensors alive during one step, peak RSS of the process), from a child process."""
    command = [sys.executable, __file__, "--child", spec, str(batch), variant]
    env = {**os.environ, **CHILD_ENV}
    tensors, rss = subprocess.run(command, capture_output=True, text=True, check=True, env=env).stdout.split()
    return int(tensors), int(rss)


def _ms(result: BenchResult) -> str:
    return f"{result.median * 1e3:7.1f} ms (+-{result.spread:.0%})"


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        _child(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spec", default="densenet121")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--only", choices=["eval", "train"], help="run one half")
    args = parser.parse_args()
    base = BenchConfig(args.spec, args.batch, repeat=args.repeat, threads=2)

    if args.only != "train":
        _eval_targets(base, args)
    if args.only != "eval":
        _train_targets(base, args)


def _eval_targets(base: BenchConfig, args: argparse.Namespace) -> None:
    print(f"== eval forward, {args.spec}, batch {args.batch}, timed alternately")
    eager, fast = run_compare(base, BenchConfig(**{**asdict(base), "optimize": True}))
    print(f"eager (torchvision structure) {_ms(eager)}")
    print(f"optimize_for_inference        {_ms(fast)}   speed-up {eager.median / fast.median:.2f}x (target >= 1.4x)")
    if fast.floor_s:
        print(f"floor from MACs               {fast.floor_s * 1e3:7.1f} ms at {fast.conv_gflops:.0f} GFLOP/s")
    onnx_plain, onnx_opt = run_compare(
        BenchConfig(**{**asdict(base), "onnxruntime": True}),
        BenchConfig(**{**asdict(base), "onnxruntime": True, "optimize": True}),
    )
    print(f"onnxruntime, plain ONNX       {_ms(onnx_plain)}")
    print(
        f"onnxruntime, --optimize ONNX  {_ms(onnx_opt)}   plain/optimised {onnx_plain.median / onnx_opt.median:.2f}x "
        "(target >= 1.0x)"
    )
    print(f"optimize_for_inference vs onnxruntime: {onnx_plain.median / fast.median:.2f}x (stretch >= 1.0x)")


def _train_targets(base: BenchConfig, args: argparse.Namespace) -> None:
    print(f"\n== train step (SGD), {args.spec}, batch {args.batch}: times alternated in one process")
    variants = ("plain", "memory_efficient", "torchvision_style")
    torch.set_num_threads(2)
    steps = {variant: train_step(args.spec, args.batch, variant) for variant in variants}
    for step in steps.values():
        step()  # warm-up
    times: dict[str, list[float]] = {variant: [] for variant in variants}
    for _ in range(max(3, args.repeat // 2)):
        for variant, step in steps.items():
            times[variant] += time_step(step, 0, 1)
    median = {variant: statistics.median(t) for variant, t in times.items()}
    peaks = {variant: _peaks(args.spec, args.batch, variant) for variant in variants}
    peak = {variant: tensors for variant, (tensors, _) in peaks.items()}
    for variant in variants:
        tensors, rss = peaks[variant]
        print(
            f"{variant:18s} {median[variant] * 1e3:7.0f} ms   tensors alive at peak {tensors / 2**20:6.0f} MiB"
            f"   process peak RSS {rss / 2**30:.2f} GiB"
        )
    lean_time, tv_time = (median[v] / median["plain"] for v in ("memory_efficient", "torchvision_style"))
    print(f"memory_efficient time / plain:             {lean_time:.2f}x (target <= 1.10x)")
    print(f"torchvision_style time / plain:            {tv_time:.2f}x")
    ratio = peak["memory_efficient"] / peak["torchvision_style"]
    print(f"memory_efficient peak / torchvision_style: {ratio:.2f} (tensors alive; target <= 1.00)")
    rss = peaks["memory_efficient"][1] / peaks["torchvision_style"][1]
    print(f"memory_efficient peak / torchvision_style: {rss:.2f} (process peak RSS; target <= 1.00)")


if __name__ == "__main__":
    main()
