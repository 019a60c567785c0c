"""IR v2: typed ops, an immutable IR, backends that read only the IR, a registry of targets."""

from __future__ import annotations

import ast
import importlib.util
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from densenet_spec import as_ir, build_model, emit, optimize, optimize_for_inference
from densenet_spec.backends import TARGETS, torch_plan
from densenet_spec.backends import onnx as onnx_backend
from densenet_spec.backends.graphviz import to_dot
from densenet_spec.backends.torch_source import generate_source, module_name
from densenet_spec.cli import app
from densenet_spec.ir import IR, Act, Op, check_ir
from densenet_spec.passes import PassError, fold_batchnorm
from densenet_spec.passes.base import Pass, replace_ops

BACKENDS = Path(__file__).parent.parent / "densenet_spec" / "backends"
FORBIDDEN = {"schema", "loader", "compiler", "passes"}


def _imported(path: Path) -> set[str]:
    """The densenet_spec modules a file imports, as names relative to the package."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level == 2 or module.startswith("densenet_spec."):
                found.add(module.removeprefix("densenet_spec.").split(".")[0])
            if node.level == 2 and not module:
                found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name.removeprefix("densenet_spec.").split(".")[0] for a in node.names)
    return found


@pytest.mark.parametrize("path", sorted(BACKENDS.glob("*.py")), ids=lambda p: p.name)
def test_backends_import_only_the_ir(path: Path) -> None:
    assert not _imported(path) & FORBIDDEN, f"{path.name} imports {_imported(path) & FORBIDDEN}"


def test_the_import_check_would_see_a_forbidden_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("from ..compiler import compile_spec\nfrom densenet_spec.passes import optimize\n")
    assert _imported(bad) >= {"compiler", "passes"}


def test_ir_is_immutable_and_passes_return_a_new_one() -> None:
    ir = as_ir("densenet-40-k12")
    with pytest.raises(Exception, match=r"[Ff]rozen"):
        ir.graph.add_node("x")
    before = list(ir.layers())
    result = fold_batchnorm(ir)
    assert result.modified and result.ir is not ir
    assert list(ir.layers()) == before
    assert ir.info.passes == () and result.ir.info.inference_only


def test_ops_are_typed_with_a_window_per_axis() -> None:
    ir = as_ir("densenet121")
    conv0 = ir.layer("features.conv0").ops[0]
    assert (conv0.kind, conv0.kernel, conv0.stride, conv0.padding) == ("conv", (7, 7), (2, 2), (3, 3))  # type: ignore[attr-defined]
    norm = ir.layer("features.norm5").ops[0]
    assert (norm.kind, norm.eps, norm.momentum) == ("norm", 1e-5, 0.1)  # type: ignore[attr-defined]


def test_check_ir_names_a_broken_layer() -> None:
    ir = as_ir("densenet-40-k12")
    lowered = ir.lowered()
    layer, inputs = lowered[3]
    lowered[3] = (layer.with_ops((replace(layer.ops[0], in_channels=layer.in_channels + 1), *layer.ops[1:])), inputs)
    broken = check_ir(ir.with_layers(lowered))
    assert any(layer.name in line for line in broken)


class _Broken(Pass):
    name = "broken"

    def ensures(self, ir: IR) -> list[str]:
        return ["always broken"]

    def rewrite(self, ir: IR, state: dict[str, object] | None) -> list[tuple[object, list[str]]] | None:  # type: ignore[override]
        layer = next(iter(ir.layers()))
        return replace_ops(ir, {layer.name: (replace(layer.ops[0], path=layer.ops[0].path + "x"),)})


def test_a_pass_that_breaks_its_promise_is_stopped() -> None:
    with pytest.raises(PassError, match=r"broken broke its promise"):
        _Broken()(as_ir("densenet-40-k12"))


def test_a_pass_refuses_an_ir_it_does_not_accept() -> None:
    class Picky(_Broken):
        name = "picky"

        def requires(self, ir: IR) -> list[str]:
            return ["needs something else"]

    with pytest.raises(PassError, match="picky cannot run"):
        Picky()(as_ir("densenet-40-k12"))


def test_fold_keeps_its_promise_and_the_eps_of_the_ir() -> None:
    ir = as_ir("densenet-bc-100-k12")
    model = build_model(ir, seed=0).eval()
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_var.uniform_(0.5, 2.0)
            module.eps = 1e-3  # the model says 1e-3; so must the IR, or the fold is wrong
    lowered = [
        (layer.with_ops(replace(op, eps=1e-3) if op.kind == "norm" else op for op in layer.ops), inputs)
        for layer, inputs in ir.lowered()
    ]
    ir3 = ir.with_layers(lowered)
    fast_ir, state = optimize(ir3, model.state_dict())
    assert not [op for op in fast_ir.ops() if op.kind == "norm"]
    fast = build_model(fast_ir, weights=state)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(fast(x), model(x), atol=1e-5, rtol=1e-4)


# ----------------------------------------------------------------------------- a new op kind


@dataclass(frozen=True, kw_only=True)
class Toy(Op):
    """A toy activation, known to no backend until the test registers it."""

    kind: ClassVar[str] = "toy_tanh"


def _with_toy(ir: IR) -> IR:
    lowered = [
        (
            layer.with_ops(
                Toy(path=op.path, in_channels=op.in_channels, in_size=op.in_size) if isinstance(op, Act) else op
                for op in layer.ops
            ),
            inputs,
        )
        for layer, inputs in ir.lowered()
    ]
    return ir.with_layers(lowered)


def test_a_new_op_kind_is_one_emitter_per_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    import onnxruntime as ort

    ir = _with_toy(as_ir("densenet-40-k12"))
    assert check_ir(ir) == []
    with pytest.raises(ValueError, match="no module for op kind 'toy_tanh'"):
        build_model(ir)
    monkeypatch.setitem(torch_plan.MODULES, "toy_tanh", lambda op: torch_plan.Call("nn.Tanh"))
    monkeypatch.setitem(onnx_backend.NODES, "toy_tanh", lambda e, op, x, out: e.add("Tanh", [x], out, op.path))

    model = build_model(ir, seed=0).eval()
    assert isinstance(model.get_submodule("features.denseblock1.denselayer1.relu1"), torch.nn.Tanh)
    data = emit(ir, "onnx", {"seed": 0})
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = model(x).numpy()
    got = ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, {"input": x.numpy()})[0]
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=1e-4)
    assert "features.denseblock1.denselayer1" in to_dot(ir, detail="layers", blocks=[1])
    namespace: dict[str, object] = {}
    exec(compile(generate_source(ir), "toy", "exec"), namespace)
    generated = namespace["build"](seed=0)  # type: ignore[operator]
    assert isinstance(generated.features.denseblock1.denselayer1.relu1, torch.nn.Tanh)
    torch.testing.assert_close(generated.state_dict(), build_model(ir, seed=0).state_dict())


# ----------------------------------------------------------------------------- the target registry

RUNNER = CliRunner()
OPTIONS = {
    "weights": ["--weights", "x.pt"],
    "adapt": ["--weights", "x.pt", "--adapt"],
    "features": ["--features", "1"],
    "seed": ["--seed", "1"],
    "opset": ["--opset", "17"],
    "optimize": ["--optimize"],
    "detail": ["--detail", "layers"],
    "blocks": ["--detail", "layers", "--blocks", "1"],
    "rankdir": ["--rankdir", "LR"],
    "labels": ["--labels", "full"],
    "legend": ["--no-legend"],
    "title": ["--title", "x"],
    "dpi": ["--dpi", "150"],
}
MISAPPLIED = [
    (t.name, option)
    for t in TARGETS.values()
    for option in OPTIONS
    if option not in t.options and not (option == "blocks" and "detail" not in t.options)
]


@pytest.mark.parametrize(("target", "option"), MISAPPLIED)
def test_an_option_for_another_target_is_a_usage_error(target: str, option: str, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = RUNNER.invoke(app, ["build", "densenet-40-k12", "--to", target, *OPTIONS[option], "-o", str(out)])
    assert result.exit_code == 2, result.output
    assert f"--{option}" in result.stderr and f"does not apply to --to {target}" in result.stderr
    if (target, option) == ("torch", "weights"):  # where weights go instead (cli_polish_test)
        assert "the source holds no weights" in result.stderr
    else:
        assert TARGETS[target].describe_options() in result.stderr
    assert not out.exists()


def test_every_option_applies_somewhere() -> None:
    assert set(OPTIONS) == set().union(*(t.options for t in TARGETS.values()))


def test_default_python_file_name_is_importable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = RUNNER.invoke(app, ["build", "densenet-bc-100-k12", "--to", "torch"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "densenet_bc_100_k12.py").is_file()
    assert module_name("121-x.y") == "net_121_x_y"


def test_optimised_source_equals_optimize_for_inference(tmp_path: Path) -> None:
    model = build_model("densenet121", seed=0).eval()
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.normal_(0, 0.1)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.normal_(0, 1)
    path = tmp_path / "densenet121_fast.py"
    result = RUNNER.invoke(app, ["build", "densenet121", "--to", "torch", "--optimize", "-o", str(path)])
    assert result.exit_code == 0, result.output
    docstring = path.read_text().split('"""', 2)[1]
    assert "torchvision's DenseNet, so its checkpoints" not in docstring  # folded: not torchvision's
    said = " ".join(docstring.split())
    assert "`_, state = densenet_spec.optimize(spec, weights)`" in said and "densenet121_optimized" not in said
    spec = importlib.util.spec_from_file_location("densenet121_fast", path)
    assert spec is not None and spec.loader is not None
    generated = importlib.util.module_from_spec(spec)
    sys.modules["densenet121_fast"] = generated
    try:
        spec.loader.exec_module(generated)
    finally:
        del sys.modules["densenet121_fast"]
    _, state = optimize(model.ir, model.state_dict())  # type: ignore[arg-type]
    built = generated.build()
    built.load_state_dict(state, strict=True)
    with pytest.raises(RuntimeError, match="inference only"):
        built.train()
    fast = optimize_for_inference(model)
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(built(x), fast(x), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(fast(x), model(x), atol=1e-4, rtol=1e-4)
