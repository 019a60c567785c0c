"""Standalone PyTorch source: importable, equal to build_model, deterministic, ruff-clean."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch
from typer.testing import CliRunner

from densenet_spec import build_model, compile_spec, load_spec
from densenet_spec.backends.torch_source import generate_source
from densenet_spec.cli import app

from .conftest import PRESETS, TESTS

GOLDEN = TESTS / "golden"


def _import(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(path.stem.replace("-", "_").replace(".", "_"), path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", PRESETS)
def test_source_model_equals_build_model(name: str, tmp_path: Path) -> None:
    ir = compile_spec(load_spec(name))
    path = tmp_path / f"{name}.py"
    path.write_text(generate_source(ir))
    generated = _import(path).build(seed=0).eval()
    reference = build_model(ir, seed=0).eval()
    ours = {k: tuple(v.shape) for k, v in reference.state_dict().items()}
    assert {k: tuple(v.shape) for k, v in generated.state_dict().items()} == ours
    # The same seed draws the same initial weights; loading makes it certain either way.
    generated.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(2, ir.info.input_channels, *ir.info.input_size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(generated(x), reference(x), atol=1e-5, rtol=1e-5)


def test_same_seed_same_initial_weights(tmp_path: Path) -> None:
    ir = compile_spec(load_spec("densenet-bc-100-k12"))
    path = tmp_path / "m.py"
    path.write_text(generate_source(ir))
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    generated = _import(path).build(seed=7)
    assert torch.equal(torch.random.get_rng_state(), before), "build(seed=...) moved the caller's random state"
    for (key, a), b in zip(generated.state_dict().items(), build_model(ir, seed=7).state_dict().values(), strict=True):
        assert torch.equal(a, b), key


def test_source_is_deterministic_and_matches_golden() -> None:
    source = generate_source(compile_spec(load_spec("densenet121")))
    assert source == generate_source(compile_spec(load_spec("densenet121")))
    golden = GOLDEN / "densenet121.py"
    if os.environ.get("DENSENET_SPEC_UPDATE_GOLDEN"):
        golden.write_text(source)
    assert source == golden.read_text(), "regenerate with DENSENET_SPEC_UPDATE_GOLDEN=1"


@pytest.mark.parametrize("config", ["isolated", "project"])
def test_source_is_ruff_clean(tmp_path: Path, config: str) -> None:
    path = tmp_path / "densenet_bc.py"
    path.write_text(generate_source(compile_spec(load_spec("densenet-bc-190-k40"))))
    flags = ["--isolated"] if config == "isolated" else ["--config", str(TESTS.parent / "pyproject.toml")]
    check = subprocess.run([sys.executable, "-m", "ruff", "check", *flags, str(path)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout
    if config == "isolated":  # formatted for ruff's defaults (88 columns), as a user's project would have it
        fmt = subprocess.run(
            [sys.executable, "-m", "ruff", "format", "--check", *flags, str(path)], capture_output=True
        )
        assert fmt.returncode == 0, fmt.stdout


def test_running_the_file_prints_params_and_shape(tmp_path: Path) -> None:
    path = tmp_path / "densenet-40-k12.py"
    path.write_text(generate_source(compile_spec(load_spec("densenet-40-k12"))))
    result = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "densenet-40-k12: 1,019,722 parameters; output shape (1, 10)"


def test_source_imports_torch_only(tmp_path: Path) -> None:
    source = generate_source(compile_spec(load_spec("densenet121")))
    imports = {line.split()[1].split(".")[0] for line in source.splitlines() if line.startswith(("import ", "from "))}
    assert imports == {
        "__future__",
        "collections",
        "contextlib",
        "sys",
        "threading",
        "typing",
        "torch",
        "weakref",
    }  # torch, stdlib


def test_build_to_torch_default_path_and_stdout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runner = CliRunner()
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["build", "densenet-bc-100-k12", "--to", "torch"])
    assert result.exit_code == 0, result.stderr
    written = (tmp_path / "densenet_bc_100_k12.py").read_text()
    assert "from preset densenet-bc-100-k12" in written
    stdout = runner.invoke(app, ["build", "densenet-bc-100-k12", "--to", "torch", "-o", "-"])
    assert stdout.stdout == written


def test_spec_file_source_header_names_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mine.yaml").write_text(
        'name: mine\ndescription: "A test: \\\\ with \\"quotes\\""\nextends: densenet-40-k12\n'
    )
    source = generate_source(compile_spec(load_spec("mine.yaml")))
    assert "from mine.yaml;" in source
    compile(source, "mine.py", "exec")


@pytest.mark.parametrize("norm", ["batch", "group"])
def test_optimised_source_says_which_weights_it_loads(norm: str, tmp_path: Path) -> None:
    """Folded batch norms: the weights that optimize() folds; nothing folded (group norm): the
    plain model's state_dict as it is. Either way the header's instructions work."""
    from densenet_spec import Spec, optimize, optimize_for_inference

    given = {"name": "n", "growth_rate": 8, "blocks": [2, 2], "input": {"size": 32}}
    given |= {"stem": {"kind": "cifar", "channels": 16}, "norm": {"kind": norm, "groups": 4} if norm == "group" else {}}
    spec = Spec.model_validate(given)
    model = build_model(spec, seed=1).eval()
    fast_ir, state = optimize(spec, model.state_dict())
    path = tmp_path / "net_fast.py"
    path.write_text(generate_source(fast_ir))
    header = " ".join(path.read_text().split('"""')[1].split())
    folded = "batch norms are folded into the convolutions" in header
    assert folded == (norm == "batch") and ("no norm is folded" in header) == (norm == "group")
    assert "`_, state = densenet_spec.optimize(spec, weights)`" in header
    net = _import(path).build().eval()
    net.load_state_dict(state if folded else model.state_dict())
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(net(x), optimize_for_inference(model)(x), rtol=1e-5, atol=1e-5)


def test_a_fresh_optimised_source_network_has_its_activations(tmp_path: Path) -> None:
    """build() without weights clamps at 0, as a folded BN-ReLU of initial norms does: a negative
    input to a clamp does not pass (unbounded clamps made the fresh network linear)."""
    from densenet_spec import optimize

    fast_ir, _ = optimize("densenet-40-k12")
    path = tmp_path / "fast.py"
    path.write_text(generate_source(fast_ir))
    module = _import(path)
    net = module.build(seed=0).eval()
    clamps = [m for m in net.modules() if isinstance(m, module.Clamp)]
    assert clamps and all(bool((m.lo == 0).all()) and bool(torch.isposinf(m.hi).all()) for m in clamps)
    with torch.no_grad():
        assert bool((clamps[0](-torch.rand(1, clamps[0].lo.shape[0], 4, 4)) == 0).all())
