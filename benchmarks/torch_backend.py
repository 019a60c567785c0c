"""densenet121 on this machine: build time, eval forward and train step at batch 8, plain and memory_efficient.

Run: .venv/bin/python benchmarks/torch_backend.py [--spec densenet121] [--batch 8] [--repeat 10]
Times: plain and memory_efficient alternately in one process. Peak RSS: each configuration again
in a child process of its own.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

from densenet_spec.bench import BenchConfig, run_compare, run_isolated


def build_time(spec: str, repeat: int = 5) -> float:
    from densenet_spec import build_model, compile_spec, load_spec

    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        build_model(compile_spec(load_spec(spec)), seed=0)
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--spec", default="densenet121")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args()
    print(f"{args.spec}: build_model (compile + modules + init) {build_time(args.spec) * 1e3:.0f} ms (median of 5)")
    for mode in ("eval", "train"):
        plain = BenchConfig(args.spec, args.batch, mode=mode, repeat=args.repeat, threads=2)
        lean = replace(plain, memory_efficient=True)
        timed = run_compare(plain, lean)  # alternately: the machine's drift hits both alike
        for config, result in zip((plain, lean), timed, strict=True):
            rss = run_isolated(replace(config, warmup=1, repeat=2)).peak_memory or 0
            ratio = result.median / timed[0].median
            print(
                f"{config.label():34s} {result.median * 1e3:7.1f} ms +-{result.spread:4.0%}  "
                f"{result.images_per_s:5.1f} img/s  peak RSS {rss / 2**30:.2f} GiB  time vs plain {ratio:.2f}x"
            )


if __name__ == "__main__":
    main()
