"""Issue targets for speed and memory, as side-by-side ratios from one run (densenet121, batch 8).

Eval: the optimised model (optimize_for_inference) against the unoptimised torchvision-structured
model, timed alternately; onnxruntime on the same weights, plain and --optimize ONNX.
Train: plain, memory_efficient (recompute concat-BN-ReLU, keep the 1x1 output) and
torchvision-style checkpointing (recompute the 1x1 convolution too), each in its own child
process for its peak RSS.

Run: .venv/bin/python benchmarks/fast_and_lean.py [--spec densenet121] [--batch 8] [--repeat 10]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
from dataclasses import asdict

from densenet_spec.bench import BenchConfig, BenchResult, run_compare, run_here


def _child(argv: list[str]) -> None:
    """Run one train configuration; with torchvision_style, recompute the 1x1 convolution too."""
    config = BenchConfig(**json.loads(argv[0]))
    if argv[1] == "torchvision_style":
        from torch.utils.checkpoint import noop_context_fn

        from densenet_spec.backends import torch_module

        torch_module._KEEP_CONVOLUTIONS = noop_context_fn  # type: ignore[assignment]
    result = run_here(config)
    result.peak_memory = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps(result.to_json()))


def _isolated(config: BenchConfig, variant: str) -> BenchResult:
    command = [sys.executable, __file__, "--child", json.dumps(asdict(config)), variant]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    return BenchResult.from_json(json.loads(out))


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
    print(f"\n== train step (SGD), {args.spec}, batch {args.batch}, one child process each")
    train = BenchConfig(**{**asdict(base), "mode": "train", "repeat": max(3, args.repeat // 2)})
    lean_config = BenchConfig(**{**asdict(train), "memory_efficient": True})
    plain = _isolated(train, "plain")
    lean = _isolated(lean_config, "lean")
    tv = _isolated(lean_config, "torchvision_style")
    gib = 2**30
    for label, result in (("plain", plain), ("memory_efficient", lean), ("torchvision-style checkpoint", tv)):
        peak = (result.peak_memory or 0) / gib
        print(f"{label:29s} {_ms(result)}  peak RSS {peak:.2f} GiB")
    print(f"memory_efficient time / plain time: {lean.median / plain.median:.2f}x (target <= 1.10x)")
    print(f"torchvision-style time / plain:     {tv.median / plain.median:.2f}x")
    print(
        f"memory_efficient peak / torchvision-style peak: {(lean.peak_memory or 0) / (tv.peak_memory or 1):.2f} "
        "(target <= 1.00)"
    )


if __name__ == "__main__":
    main()
