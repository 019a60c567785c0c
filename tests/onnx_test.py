"""The ONNX backend: parity with torch in onnxruntime, naming, opsets, determinism, weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from typer.testing import CliRunner

from densenet_spec import build_model, compile_spec, export_onnx, load_spec
from densenet_spec.backends.onnx import to_onnx
from densenet_spec.cli import app

from .conftest import PRESETS


def _session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("name", PRESETS)
def test_onnxruntime_matches_torch(name: str, tmp_path: Path) -> None:
    ir = compile_spec(load_spec(name))
    model = build_model(ir, seed=1).eval()
    path = export_onnx(ir, tmp_path / f"{name}.onnx", state_dict=model.state_dict())
    session = _session(path)
    for batch in (1, 3):
        x = torch.randn(
            batch, ir.info.input_channels, *ir.info.input_size, generator=torch.Generator().manual_seed(batch)
        )
        (actual,) = session.run(None, {"input": x.numpy()})
        with torch.no_grad():
            expected = model(x).numpy()
        assert actual.shape == (batch, ir.info.num_classes)
        assert np.abs(actual - expected).max() <= 1e-4


def test_graph_names_metadata_and_checker(tmp_path: Path) -> None:
    ir = compile_spec(load_spec("densenet-bc-100-k12"))
    model = to_onnx(ir, build_model(ir, seed=0).state_dict())
    onnx.checker.check_model(model, full_check=True)
    names = {node.name for node in model.graph.node}
    assert "features.denseblock2.denselayer3.conv1" in names
    assert "features.denseblock2.denselayer3.cat" in names
    assert "features.transition1.pool" in names and "classifier" in names
    initializers = {init.name for init in model.graph.initializer}
    expected = {key for key in ir.state_shapes() if not key.endswith("num_batches_tracked")}
    assert initializers == expected
    assert [i.name for i in model.graph.input] == ["input"]
    batch = model.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch.dim_param == "batch"
    assert [o.name for o in model.graph.output] == ["logits"]
    props = {p.key: p.value for p in model.metadata_props}
    assert props["densenet_spec.name"] == "densenet-bc-100-k12"
    assert props["densenet_spec.version"]
    assert {node.op_type for node in model.graph.node} >= {"BatchNormalization", "Concat", "Conv", "Gemm"}


@pytest.mark.parametrize("opset", range(13, 22))
def test_every_opset_from_13(opset: int, tmp_path: Path) -> None:
    ir = compile_spec(load_spec("densenet-40-k12"))
    model = build_model(ir, seed=0).eval()
    path = export_onnx(ir, tmp_path / "m.onnx", state_dict=model.state_dict(), opset=opset)
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    assert proto.opset_import[0].version == opset
    x = torch.randn(2, 3, 32, 32)
    (actual,) = _session(path).run(None, {"input": x.numpy()})
    with torch.no_grad():
        assert np.abs(actual - model(x).numpy()).max() <= 1e-4


def test_same_spec_and_weights_give_identical_bytes(tmp_path: Path) -> None:
    a = export_onnx("densenet-bc-100-k12", tmp_path / "a.onnx", seed=3).read_bytes()
    b = export_onnx("densenet-bc-100-k12", tmp_path / "b.onnx", seed=3).read_bytes()
    c = export_onnx("densenet-bc-100-k12", tmp_path / "c.onnx", seed=4).read_bytes()
    assert a == b
    assert a != c


# ----------------------------------------------------------------------------- CLI and weights


@pytest.fixture
def weights(tmp_path: Path) -> dict[str, torch.Tensor]:
    return build_model("densenet-40-k12", seed=5).state_dict()


@pytest.mark.parametrize("wrap", [None, "state_dict", "model"])
def test_cli_exports_given_weights(wrap: str | None, weights, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    checkpoint = tmp_path / "ckpt.pt"
    torch.save(weights if wrap is None else {wrap: weights, "epoch": 3}, checkpoint)
    out = tmp_path / "m.onnx"
    result = CliRunner().invoke(
        app, ["build", "densenet-40-k12", "--to", "onnx", "--weights", str(checkpoint), "-o", str(out)]
    )
    assert result.exit_code == 0, result.stderr
    conv0 = next(i for i in onnx.load(str(out)).graph.initializer if i.name == "features.conv0.weight")
    assert np.array_equal(onnx.numpy_helper.to_array(conv0), weights["features.conv0.weight"].numpy())


def test_cli_reports_every_bad_key_and_writes_nothing(weights, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    weights = dict(weights)
    del weights["features.norm5.running_var"]
    weights["features.extra.weight"] = torch.zeros(1)
    weights["classifier.weight"] = torch.zeros(3, 3)
    checkpoint = tmp_path / "bad.pt"
    torch.save(weights, checkpoint)
    out = tmp_path / "m.onnx"
    result = CliRunner().invoke(
        app, ["build", "densenet-40-k12", "--to", "onnx", "--weights", str(checkpoint), "-o", str(out)]
    )
    assert result.exit_code == 1
    assert "missing key features.norm5.running_var" in result.stderr
    assert "unexpected key features.extra.weight" in result.stderr
    assert "classifier.weight has shape [3, 3]" in result.stderr
    assert "Traceback" not in result.stderr
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["bad.pt"]


def test_checkpoint_with_code_is_refused(tmp_path: Path) -> None:
    import pickle

    class Evil:
        def __reduce__(self):  # type: ignore[no-untyped-def]
            return (print, ("this must not run",))

    checkpoint = tmp_path / "evil.pt"
    checkpoint.write_bytes(pickle.dumps({"state_dict": Evil()}))
    result = CliRunner().invoke(
        app, ["build", "densenet-40-k12", "--to", "onnx", "--weights", str(checkpoint), "-o", "-"]
    )
    assert result.exit_code == 1
    assert "not a torch checkpoint" in result.stderr
    assert "this must not run" not in result.stdout


def test_ddp_prefixed_and_old_torchvision_keys_are_accepted(weights, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from densenet_spec.interop import load_weights

    renamed = {}
    for key, value in weights.items():
        key = key.replace("denselayer1.norm1", "denselayer1.norm.1").replace("denselayer1.conv2", "denselayer1.conv.2")
        renamed[f"module.{key}"] = value
    path = tmp_path / "ddp.pt"
    torch.save(renamed, path)
    ir = compile_spec(load_spec("densenet-40-k12"))
    assert set(load_weights(path, ir)[0]) == set(weights)


def test_bad_opset_is_usage_error() -> None:
    result = CliRunner().invoke(app, ["build", "densenet-40-k12", "--to", "onnx", "--opset", "11"])
    assert result.exit_code == 2


def test_onnx_refuses_over_2gb_up_front(write_spec) -> None:  # type: ignore[no-untyped-def]
    """2.3e9 parameters: refused from the IR's shapes in well under a second, before any tensor is made."""
    import time

    from densenet_spec.errors import SpecError

    spec = write_spec("name: big\ngrowth_rate: 1024\nblocks: [24]\n")
    result = CliRunner().invoke(app, ["build", str(spec), "--to", "onnx", "-o", str(spec.with_suffix(".onnx"))])
    assert result.exit_code == 1
    assert "spec.yaml:1:1: an ONNX file cannot hold this network" in result.stderr and "2 GiB" in result.stderr
    assert not spec.with_suffix(".onnx").exists()
    start = time.perf_counter()
    with pytest.raises(SpecError, match=r"9\.2 GB as float32"):
        export_onnx(spec, spec.with_suffix(".onnx"))
    assert time.perf_counter() - start < 2


def test_onnx_refuses_dimensions_beyond_int64(write_spec) -> None:  # type: ignore[no-untyped-def]
    from densenet_spec.backends.onnx import export_problems, refuse_unexportable
    from densenet_spec.errors import SpecError
    from densenet_spec.schema import Spec

    spec = write_spec(f"name: wide\ngrowth_rate: 2\nblocks: [1]\ninput:\n  size: [32, {2**63}]\n")
    result = CliRunner().invoke(app, ["build", str(spec), "--to", "onnx", "-o", "-"])
    assert result.exit_code == 1 and "Traceback" not in result.stderr
    assert "spec.yaml:5:9: input.size: 9223372036854775808 is too large for an ONNX model" in result.stderr
    in_python = compile_spec(
        Spec.model_validate({"name": "x", "growth_rate": 1, "blocks": [1], "input": {"size": 10**160}})
    )
    assert [p.path for p in export_problems(in_python)] == [("input", "size")]
    with pytest.raises(SpecError, match=r"^input\.size: about 1\.0e160 is too large"):
        refuse_unexportable(in_python)
    assert (
        export_problems(
            compile_spec(
                Spec.model_validate({"name": "x", "growth_rate": 1, "blocks": [1], "input": {"size": 2**63 - 1}})
            )
        )
        == []
    )


@pytest.mark.parametrize("name", PRESETS)
def test_presets_fit_in_onnx(name: str) -> None:
    from densenet_spec.backends.onnx import export_problems

    assert export_problems(compile_spec(load_spec(name))) == []


def test_export_onnx_refuses_a_folder_path_and_a_seed_torch_cannot_take(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"a path ending in '/' names a folder, and .* does not exist"):
        export_onnx("densenet-40-k12", f"{tmp_path}/missing/")
    folder = tmp_path / "existing"
    folder.mkdir()
    with pytest.raises(ValueError, match=r"existing: an existing folder; give a file name$"):
        export_onnx("densenet-40-k12", folder)  # was an IsADirectoryError from the final rename
    folder.rmdir()
    with pytest.raises(ValueError, match=r"^seed 18446744073709551616: out of range"):
        export_onnx("densenet-40-k12", tmp_path / "x.onnx", seed=2**64)
    with pytest.raises(ValueError, match=r"^seed -9223372036854775809: out of range"):
        build_model("densenet-40-k12", seed=-(2**63) - 1)
    with pytest.raises(TypeError, match=r"^seed must be an integer, not 1.5$"):
        build_model("densenet-40-k12", seed=1.5)  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


def test_api_arguments_of_the_wrong_type_say_what_is_wanted(tmp_path: Path) -> None:
    model = build_model("densenet-40-k12")
    with pytest.raises(
        TypeError, match=r"^weights must be a checkpoint file or a state_dict, not DenseNet: pass model"
    ):
        build_model("densenet-40-k12", weights=model)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^opset must be an integer, not '17'$"):
        export_onnx("densenet-40-k12", tmp_path / "x.onnx", opset="17")  # type: ignore[arg-type]


def test_a_network_without_a_classifier_outputs_pooled_features() -> None:
    """num_classes 0: the output holds the pooled features, named so ('logits' said otherwise)."""
    import onnxruntime as ort

    from densenet_spec import Spec, build_model, emit

    spec = Spec.model_validate(
        {"name": "p", "growth_rate": 4, "blocks": [2, 2], "input": {"size": 32}, "num_classes": 0}
    )
    model = build_model(spec, seed=0).eval()
    data = emit(spec, "onnx", {"weights": model.state_dict()})
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["pooled"]
    x = torch.randn(3, 3, 32, 32)
    (got,) = session.run(None, {"input": x.numpy()})
    with torch.no_grad():
        np.testing.assert_allclose(got, model(x).numpy(), rtol=1e-4, atol=1e-5)
