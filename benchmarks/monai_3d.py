"""densenet121-3d with memory_efficient against MONAI's DenseNet121 3-D: a training step on the CPU.

Both networks get the same weights (MONAI's, renamed: `.layers.` and `class_layers.out.`). Step
times are alternated in one process; the peak of tensors alive during one step (torch profiler)
and the process peak RSS each come from a child process of its own that runs only that variant.
Target (issue 10): <= 0.6x MONAI's peak memory at <= 1.15x its step time.

Run: .venv/bin/python benchmarks/monai_3d.py [--batch 2] [--size 96] [--repeat 6]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Callable

import torch

from densenet_spec import Spec, build_model, load_spec
from densenet_spec.bench import child_peaks, sgd_step, step_peaks, time_alternately

VARIANTS = ("monai", "plain", "memory_efficient")


def _monai(size: int) -> torch.nn.Module:
    from monai.networks.nets import DenseNet121

    torch.manual_seed(0)
    return DenseNet121(spatial_dims=3, in_channels=1, out_channels=2)


def _model(variant: str, size: int) -> torch.nn.Module:
    reference = _monai(size)
    if variant == "monai":
        return reference
    spec = load_spec("densenet121-3d").model_dump(exclude={"extends"})
    spec["input"]["size"] = [size] * 3
    state = {
        k.replace(".layers.", ".").replace("class_layers.out.", "classifier."): v
        for k, v in reference.state_dict().items()
    }
    return build_model(Spec.model_validate(spec), weights=state, memory_efficient=variant == "memory_efficient")


def train_step(variant: str, batch: int, size: int) -> Callable[[], None]:
    model = _model(variant, size).train()
    x = torch.randn(batch, 1, size, size, size, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([i % 2 for i in range(batch)])
    return sgd_step(model, x, labels)


def _child(variant: str, batch: int, size: int) -> None:
    torch.set_num_threads(2)
    print(*step_peaks(train_step(variant, batch, size), warmup=2))


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        _child(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--size", type=int, default=96)  # the preset's size; at 64 the weights dominate
    parser.add_argument("--repeat", type=int, default=6)
    args = parser.parse_args()
    torch.set_num_threads(2)
    print(f"== train step (SGD), DenseNet121 3-D, batch {args.batch}, 1x{args.size}^3: times alternated")
    steps = [train_step(variant, args.batch, args.size) for variant in VARIANTS]
    times = time_alternately(steps, warmup=1, repeat=args.repeat)
    median = {variant: statistics.median(t) for variant, t in zip(VARIANTS, times, strict=True)}
    peaks = {variant: child_peaks(__file__, variant, str(args.batch), str(args.size)) for variant in VARIANTS}
    for variant in VARIANTS:
        tensors, rss = peaks[variant]
        print(
            f"{variant:18s} {median[variant] * 1e3:8.0f} ms   tensors alive at peak {tensors / 2**20:7.0f} MiB"
            f"   process peak RSS {rss / 2**30:.2f} GiB"
        )
    lean, monai = peaks["memory_efficient"], peaks["monai"]
    time_ratio = median["memory_efficient"] / median["monai"]
    memory_ratio = lean[0] / monai[0]
    print(f"memory_efficient / MONAI, time:            {time_ratio:.2f}x (<= 1.15x) {_verdict(time_ratio <= 1.15)}")
    print(f"memory_efficient / MONAI, tensors at peak: {memory_ratio:.2f}x (<= 0.60x) {_verdict(memory_ratio <= 0.6)}")
    print(f"memory_efficient / MONAI, process peak RSS:  {lean[1] / monai[1]:.2f}x")


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


if __name__ == "__main__":
    main()
