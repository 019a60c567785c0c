"""ONNX export of densenet121: this compiler against torch.onnx.export, and onnxruntime latency of both.

Run: .venv/bin/python benchmarks/onnx_export.py [--spec densenet121] [--batch 8] [--repeat 10]
torch.onnx.export's default (dynamo) exporter needs the onnxscript package: pip install onnxscript.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch

from densenet_spec import build_model, compile_spec, export_onnx, load_spec
from densenet_spec.bench import ort_session, time_alternately


def _timed(fn, repeat: int) -> list[float]:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def _alternate_latency(paths: list[Path], x: np.ndarray, repeat: int) -> list[float]:
    """Median latency of each model, run alternately so that machine noise hits both alike."""
    sessions = [ort_session(str(path), torch.get_num_threads()) for path in paths]
    steps = [partial(session.run, None, {session.get_inputs()[0].name: x}) for session in sessions]
    return [statistics.median(t) for t in time_alternately(steps, warmup=2, repeat=repeat)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spec", default="densenet121")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    ir = compile_spec(load_spec(args.spec))
    model = build_model(ir, seed=0).eval()
    state = model.state_dict()
    x = torch.randn(args.batch, ir.info.input_channels, *ir.info.input_size)
    with tempfile.TemporaryDirectory() as tmp:
        ours, theirs = Path(tmp) / "ours.onnx", Path(tmp) / "torch.onnx"
        ours_s = _timed(lambda: export_onnx(ir, ours, state_dict=state), 3)
        torch_runs = []
        for _ in range(2):  # the first run also pays for warming up the exporter
            start = time.perf_counter()
            torch.onnx.export(
                model,
                (x[:1],),
                str(theirs),
                input_names=["input"],
                output_names=["logits"],
                dynamic_shapes={"x": {0: torch.export.Dim("batch")}},
            )
            torch_runs.append(time.perf_counter() - start)
        ours_export, torch_export = statistics.median(ours_s), torch_runs[-1]
        print(
            f"export {args.spec}: densenet-spec {ours_export:.2f} s, torch.onnx.export {torch_export:.2f} s warm "
            f"({torch_runs[0]:.2f} s first) -> {torch_export / ours_export:.1f}x faster (target >= 5x)"
        )
        feed = x.numpy()
        ours_lat, torch_lat = _alternate_latency([ours, theirs], feed, args.repeat)
        print(
            f"onnxruntime at batch {args.batch}: densenet-spec {ours_lat * 1e3:.1f} ms, torch.onnx.export "
            f"{torch_lat * 1e3:.1f} ms -> ratio {torch_lat / ours_lat:.2f} (target >= 1.0: no slower)"
        )
        external = sum(p.stat().st_size for p in Path(tmp).glob("torch.onnx*"))
        print(
            f"file sizes: densenet-spec {ours.stat().st_size:,} B; torch.onnx.export {external:,} B with external data"
        )


if __name__ == "__main__":
    main()
