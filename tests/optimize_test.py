"""optimize_for_inference and the optimised ONNX: the same function on every preset."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from typer.testing import CliRunner

from densenet_spec import build_model, emit, optimize_for_inference
from densenet_spec.cli import app

from .conftest import PRESETS


def _trained_looking(name: str, seed: int = 0) -> torch.nn.Module:
    """A model whose BN statistics and affine parameters are not the initial 0/1."""
    model = build_model(name, seed=seed)
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            c = module.num_features
            module.running_mean.copy_(torch.randn(c, generator=generator) * 0.2)
            module.running_var.copy_(torch.rand(c, generator=generator) * 0.5 + 0.75)
            module.weight.data.copy_(torch.randn(c, generator=generator) * 0.5 + 1)  # some negative
            module.bias.data.copy_(torch.randn(c, generator=generator) * 0.1)
    return model.eval()


@pytest.mark.parametrize("name", PRESETS)
def test_optimized_model_computes_the_same_function(name: str) -> None:
    model = _trained_looking(name)
    fast = optimize_for_inference(model)
    ir = model.ir
    x = torch.randn(2, ir.info.input_channels, *ir.info.input_size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert (fast(x) - model(x)).abs().max().item() <= 1e-4


def test_optimized_model_is_inference_only() -> None:
    fast = optimize_for_inference(build_model("densenet-40-k12"))
    assert not fast.training
    with pytest.raises(RuntimeError, match="inference only"):
        fast.train()
    with pytest.raises(TypeError):
        optimize_for_inference(torch.nn.Linear(2, 2))  # type: ignore[arg-type]


@pytest.mark.parametrize("norm", ["{kind: group, groups: 2}", "instance", "none"])
def test_optimized_model_without_batch_norms_is_eval_only_too(tmp_path: Path, norm: str) -> None:
    spec = tmp_path / "gn.yaml"
    spec.write_text(
        "name: gn\ngrowth_rate: 4\nblocks: [2, 2]\ninput: {size: 32}\nstem: cifar\nnum_classes: 3\n"
        f"norm: {norm}\ndropout: 0.2\nhead: {{pool: avg, dropout: 0.2}}\n"
    )
    model = build_model(spec, seed=0).eval()
    fast = optimize_for_inference(model)
    assert not fast.training
    with pytest.raises(RuntimeError, match="inference only"):
        fast.train()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(fast(x), model(x))  # dropout off: the same function, every call


def test_optimized_model_keeps_the_dtype() -> None:
    model = _trained_looking("densenet-bc-100-k12").double()
    fast = optimize_for_inference(model)
    assert {p.dtype for p in fast.parameters()} == {torch.float64}
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    with torch.no_grad():  # folded in float64: agreement to float64 rounding, not float32's
        assert (fast(x) - model(x)).abs().max().item() <= 1e-10
    half = optimize_for_inference(model.bfloat16())
    assert {p.dtype for p in half.parameters()} == {torch.bfloat16}
    with torch.no_grad():
        assert half(x.bfloat16()).dtype == torch.bfloat16


def test_a_features_only_backbone_is_refused_by_name() -> None:
    backbone = build_model("densenet-40-k12", features_only=True)
    with pytest.raises(TypeError, match="not a features_only backbone"):
        optimize_for_inference(backbone)  # type: ignore[arg-type]


def test_zero_bn_scale_is_handled() -> None:
    model = _trained_looking("densenet-bc-100-k12")
    norm = model.features.denseblock2.denselayer3.norm1
    norm.weight.data[:5] = 0.0  # relu(bias) becomes a constant for those channels
    fast = optimize_for_inference(model)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert (fast(x) - model(x)).abs().max().item() <= 1e-4


@pytest.mark.parametrize("name", ["densenet121", "densenet-bc-100-k12", "densenet-40-k12"])
def test_optimized_onnx_matches_torch(name: str) -> None:
    model = _trained_looking(name)
    ir = model.ir
    data = emit(ir, "onnx", {"weights": model.state_dict(), "optimize": True})
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    x = torch.randn(3, ir.info.input_channels, *ir.info.input_size)
    (actual,) = session.run(None, {"input": x.numpy()})
    with torch.no_grad():
        assert np.abs(actual - model(x).numpy()).max() <= 1e-4


def test_cli_optimized_onnx_and_summary(tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "m.onnx"
    result = runner.invoke(app, ["build", "densenet-bc-100-k12", "--to", "onnx", "--optimize", "-o", str(out)])
    assert result.exit_code == 0, result.stderr
    import onnx

    model = onnx.load(str(out))
    names = {node.name for node in model.graph.node}
    assert "features.denseblock1.denselayer1.norm2" not in names  # folded
    kinds = [
        n.op_type for n in model.graph.node if n.name.startswith("features.transition1.") and n.op_type != "Concat"
    ]
    assert kinds == ["BatchNormalization", "Relu", "AveragePool", "Conv"]  # ONNX keeps BN-ReLU (no clamps)
    assert model.graph.node[[n.name for n in model.graph.node].index("features.transition1.norm")].attribute[0].f == 0.0
    summary = runner.invoke(app, ["summary", "densenet121", "--optimize", "--format", "json"])
    data = json.loads(summary.stdout)
    assert data["passes"] == ["swap_transition_pool", "fold_batchnorm"]
    assert data["unoptimized"]["macs"] - data["macs"] == 3 * 102_760_448 * 3 // 4
    table = runner.invoke(app, ["summary", "densenet121", "--optimize"])
    assert "75.0%" in table.stdout
