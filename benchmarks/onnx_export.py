"""ONNX export of densenet121: this compiler against torch.onnx.export, and onnxruntime latency of both.

Run: .venv/bin/python benchmarks/onnx_export.py [--spec densenet121] [--batch 8] [--repeat 10]
torch.onnx.export's default (dynamo) exporter needs the onnxscript package: pip install onnxscript.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from densenet_spec import build_model, compile_spec, export_onnx, load_spec


def _timed(fn, repeat: int) -> list[float]:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def _latency(path: Path, x: np.ndarray, repeat: int) -> list[float]:
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    session.run(None, {session.get_inputs()[0].name: x})
    name = session.get_inputs()[0].name
    return _timed(lambda: session.run(None, {name: x}), repeat)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spec", default="densenet121")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args()
    ir = compile_spec(load_spec(args.spec))
    model = build_model(ir, seed=0).eval()
    state = model.state_dict()
    x = torch.randn(args.batch, ir.info.input_channels, *ir.info.input_size)
    with tempfile.TemporaryDirectory() as tmp:
        ours, theirs = Path(tmp) / "ours.onnx", Path(tmp) / "torch.onnx"
        ours_s = _timed(lambda: export_onnx(ir, ours, state_dict=state), 3)
        start = time.perf_counter()
        torch.onnx.export(
            model,
            (x[:1],),
            str(theirs),
            input_names=["input"],
            output_names=["logits"],
            dynamic_shapes={"x": {0: torch.export.Dim("batch")}},
        )
        torch_s = time.perf_counter() - start
        ours_export, torch_export = statistics.median(ours_s), torch_s
        print(
            f"export {args.spec}: densenet-spec {ours_export:.2f} s, torch.onnx.export {torch_export:.2f} s "
            f"-> {torch_export / ours_export:.1f}x faster (target >= 5x)"
        )
        feed = x.numpy()
        ours_lat = statistics.median(_latency(ours, feed, args.repeat))
        torch_lat = statistics.median(_latency(theirs, feed, args.repeat))
        print(
            f"onnxruntime at batch {args.batch}: densenet-spec {ours_lat * 1e3:.1f} ms, torch.onnx.export "
            f"{torch_lat * 1e3:.1f} ms -> ratio {torch_lat / ours_lat:.2f} (target >= 1.0: no slower)"
        )
        print(f"file sizes: densenet-spec {ours.stat().st_size:,} B, torch.onnx.export {theirs.stat().st_size:,} B")


if __name__ == "__main__":
    main()
