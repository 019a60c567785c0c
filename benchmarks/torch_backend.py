"""densenet121 on this machine: build time, eval forward and train step at batch 8, plain and memory_efficient.

Run: .venv/bin/python benchmarks/torch_backend.py [--spec densenet121] [--batch 8] [--repeat 10]
Each configuration runs in its own child process, so that its peak RSS is its own.
"""

from __future__ import annotations

import argparse
import time

from densenet_spec.bench import BenchConfig, BenchResult, run_isolated


def build_time(spec: str, repeat: int = 5) -> float:
    from densenet_spec import build_model, compile_spec, load_spec

    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        build_model(compile_spec(load_spec(spec)), seed=0)
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def row(result: BenchResult, base: BenchResult | None) -> str:
    ratio = f"{result.median / base.median:5.2f}x" if base else "    - "
    memory = f"{result.peak_memory / 2**30:5.2f} GiB" if result.peak_memory else "   -    "
    return (
        f"{result.config.label():40s} {result.median * 1e3:8.1f} ms  +-{result.spread:4.0%}  "
        f"{result.images_per_s:7.1f} img/s  peak RSS {memory}  time vs plain {ratio}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--spec", default="densenet121")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args()
    print(f"{args.spec}: build_model (compile + modules + init) {build_time(args.spec) * 1e3:.0f} ms (median of 5)")
    for mode in ("eval", "train"):
        plain = run_isolated(BenchConfig(args.spec, args.batch, mode=mode, repeat=args.repeat))
        lean = run_isolated(BenchConfig(args.spec, args.batch, mode=mode, memory_efficient=True, repeat=args.repeat))
        print(row(plain, None))
        print(row(lean, plain))


if __name__ == "__main__":
    main()
