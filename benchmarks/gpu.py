"""GPU figures for README's table: densenet121 train and eval with bf16 autocast and channels_last,
plain against memory_efficient (images/s, the allocator's peak), on the first CUDA device.

Run: .venv/bin/python benchmarks/gpu.py [--spec densenet121] [--batch 64] [--repeat 20]
Prints one Markdown row per configuration, naming the GPU; exits 1 where no CUDA device is.
"""

from __future__ import annotations

import argparse
import sys

from densenet_spec.bench import BenchConfig, run_here


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spec", default="densenet121")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    import torch

    if not torch.cuda.is_available():
        print("benchmarks/gpu.py: no CUDA device is available here", file=sys.stderr)
        raise SystemExit(1)
    gpu = torch.cuda.get_device_name(0)
    print(f"| {args.spec}, batch {args.batch}, bf16 autocast, channels_last, {gpu} | images/s | peak memory |")
    print("|---|---|---|")
    for mode in ("train", "eval"):
        for lean in (False, True):
            if mode == "eval" and lean:
                continue  # memory_efficient changes training only
            config = BenchConfig(
                args.spec,
                args.batch,
                device="cuda",
                mode=mode,
                memory_efficient=lean,
                channels_last=True,
                amp=True,
                warmup=5,
                repeat=args.repeat,
            )
            result = run_here(config)
            peak = (result.peak_memory or 0) / 2**30
            print(f"| {config.label()} | {result.images_per_s:,.0f} | {peak:.2f} GiB |")


if __name__ == "__main__":
    main()
