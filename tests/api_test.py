"""The Python front door: what each entry point takes, and the errors for what it does not."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from densenet_spec import SpecError, as_ir, build_model, export_onnx, load_spec


def test_a_mapping_of_fields_is_a_spec() -> None:
    fields = {"name": "m", "input": {"size": 32}, "growth_rate": 4, "blocks": [2, 2], "num_classes": 3}
    assert as_ir(fields).params == as_ir(_written(fields)).params
    assert build_model(fields, seed=0).classifier.out_features == 3  # type: ignore[union-attr]


def _written(fields: dict[str, object]) -> Path:
    import tempfile

    import yaml

    path = Path(tempfile.mkdtemp()) / "m.yaml"
    path.write_text(yaml.safe_dump(fields))
    return path


def test_a_bad_mapping_names_the_field() -> None:
    with pytest.raises(SpecError, match="growth_rate: -4 is out of range"):
        as_ir({"name": "m", "growth_rate": -4, "blocks": [2]})


def test_a_mapping_with_extends_says_where_extends_works() -> None:
    with pytest.raises(ValueError, match="extends is resolved when a spec file is read"):
        as_ir({"name": "m", "extends": "densenet121", "growth_rate": 8})


def test_a_dump_of_a_spec_that_extended_another_goes_back_in(tmp_path: Path) -> None:
    """model_dump() of a loaded child keeps extends as a record beside every resolved field: it
    is the same network again (a mapping with only some fields and extends is still refused)."""
    child = tmp_path / "gray.yaml"
    child.write_text("name: gray\nextends: densenet-40-k12\ninput: {channels: 1}\n")
    dumped = load_spec(child).model_dump()
    assert dumped["extends"] == "densenet-40-k12"
    again = as_ir(dumped)
    assert (again.params, again.info.input_channels) == (as_ir(child).params, 1)


def test_what_is_not_a_spec_is_named() -> None:
    with pytest.raises(TypeError, match=r"spec must be a Spec, a mapping of its fields.*not int"):
        as_ir(5)  # type: ignore[arg-type]


def test_export_onnx_names_its_own_argument(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"^features: 9 is out of range; this network has 4 taps"):
        export_onnx("densenet-40-k12", tmp_path / "m.onnx", features=(9,))
    assert not (tmp_path / "m.onnx").exists()


def test_export_onnx_takes_weights_as_build_model_does(tmp_path: Path) -> None:
    state = build_model("densenet-40-k12", seed=3).state_dict()
    by_weights = export_onnx("densenet-40-k12", tmp_path / "a.onnx", weights=state).read_bytes()
    by_state_dict = export_onnx("densenet-40-k12", tmp_path / "b.onnx", state_dict=state).read_bytes()
    assert by_weights == by_state_dict != export_onnx("densenet-40-k12", tmp_path / "c.onnx").read_bytes()
    with pytest.raises(ValueError, match="one argument under two names"):
        export_onnx("densenet-40-k12", tmp_path / "d.onnx", weights=state, state_dict=state)


def test_optimize_takes_a_spec_as_the_other_entry_points(tmp_path: Path) -> None:
    from densenet_spec import optimize

    state = build_model("densenet-40-k12", seed=1).state_dict()
    path = tmp_path / "w.pt"
    torch.save(state, path)
    by_name = optimize("densenet-40-k12", path)
    by_ir = optimize(as_ir("densenet-40-k12"), state)
    assert by_name[0].macs == by_ir[0].macs and by_name[1] is not None and by_ir[1] is not None
    assert all(torch.equal(by_name[1][key], value) for key, value in by_ir[1].items())


def test_compile_spec_of_a_mapping_says_what_compiles_one() -> None:
    from densenet_spec import compile_spec

    with pytest.raises(TypeError, match=r"as_ir\(fields\) compiles a mapping"):
        compile_spec({"name": "x"})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"or as_ir\('densenet121'\) does both"):
        compile_spec("densenet121")  # type: ignore[arg-type]


def test_export_onnx_refuses_a_suffix_another_target_writes(tmp_path: Path) -> None:
    """A .json file may be a spec (JSON specs load), a .py one source: as the CLI's -o, refused."""
    for name in ("spec.json", "net.py", "d.svg"):
        target = tmp_path / name
        target.write_text("{}")
        with pytest.raises(ValueError, match=r"export_onnx writes an ONNX model, not a file of --to \w+'s kind"):
            export_onnx("densenet-40-k12", target)
        assert target.read_text() == "{}"
    assert export_onnx("densenet-40-k12", tmp_path / "model.bin.onnx").is_file()


@pytest.mark.parametrize("name", ["net.yaml", "NET.YML", "w.pt", "w.pth", "w.ckpt", "w.safetensors", "model.bin"])
def test_export_onnx_does_not_write_over_a_spec_or_a_checkpoint(tmp_path: Path, name: str) -> None:
    """As the CLI's -o: a file named like a spec or a checkpoint is left as it is."""
    target = tmp_path / name
    target.write_text("precious")
    with pytest.raises(ValueError, match=r"that names a (spec|checkpoint) file, which export_onnx does not write"):
        export_onnx("densenet-40-k12", target)
    assert target.read_text() == "precious"


def test_export_onnx_does_not_write_over_the_files_it_reads(tmp_path: Path) -> None:
    """The spec file read, and the checkpoint read, whatever they are called."""
    spec = tmp_path / "spec.txt"
    spec.write_text("name: s\ngrowth_rate: 4\nblocks: [2]\ninput: {size: 32}\nstem: cifar\n")
    weights = tmp_path / "weights"
    torch.save(build_model(spec).state_dict(), weights)
    before = weights.read_bytes()
    with pytest.raises(ValueError, match="that names a file it reads"):
        export_onnx(spec, spec)
    with pytest.raises(ValueError, match="that names a file it reads"):
        export_onnx(spec, str(weights), weights=weights)
    assert spec.read_text().startswith("name: s") and weights.read_bytes() == before
    assert export_onnx(spec, tmp_path / "spec.onnx", weights=weights).is_file()


@pytest.mark.parametrize(
    ("target", "options", "message"),
    [
        ("dot", {"detail": "nope"}, "detail: 'nope' is not one of blocks, layers"),
        ("dot", {"rankdir": "XX"}, "rankdir: 'XX' is not one of LR, TB"),
        ("dot", {"labels": "bogus"}, "labels: 'bogus' is not one of short, full, none"),
        ("dot", {"legend": "no"}, "legend: True or False, not 'no'"),
        ("png", {"dpi": "x"}, "dpi: a number from 10 to 2400, not 'x'"),
        ("png", {"dpi": -1}, "dpi: a number from 10 to 2400, not -1"),
        ("dot", {"detail": "layers", "blocks": [9]}, "blocks: a list of block numbers 1..3, not [9]"),
        ("dot", {"detail": "layers", "blocks": [-1]}, "blocks: a list of block numbers 1..3, not [-1]"),
        ("dot", {"detail": "layers", "blocks": "1"}, "blocks: a list of block numbers 1..3, not '1'"),
        ("dot", {"blocks": [1]}, "blocks: the blocks to draw apply to detail='layers'"),
        ("mermaid", {"rankdir": "XX"}, "rankdir: 'XX' is not one of LR, TB"),
    ],
)
def test_emit_checks_the_diagram_options_values(target: str, options: dict[str, object], message: str) -> None:
    """As the CLI's option types do: a value a drawing does not know is named, not ignored or a
    traceback from inside the drawing."""
    from densenet_spec import emit

    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        emit(as_ir("densenet-40-k12"), target, options)


def test_emit_takes_any_spec_and_names_options_of_another_type() -> None:
    from densenet_spec import emit

    assert emit("densenet-40-k12", "dot") == emit(as_ir("densenet-40-k12"), "dot")
    assert "denselayer1" in str(emit("densenet-40-k12", "dot", {"detail": "layers", "blocks": [2]}))
    with pytest.raises(TypeError, match="options must be a mapping of option names to values, not list"):
        emit("densenet-40-k12", "json", ["x"])  # type: ignore[arg-type]


def test_export_onnx_features_as_build_model_takes_out_indices(tmp_path: Path) -> None:
    """The features "all" as on the command line; a number or a string is named, not a bare TypeError."""
    import onnx

    path = export_onnx("densenet-40-k12", tmp_path / "b.onnx", features="all")
    assert [o.name for o in onnx.load(path).graph.output] == ["feature0", "feature1", "feature2", "feature3"]
    for wrong in (3, "al"):
        with pytest.raises(TypeError, match=r'^features takes a sequence of tap numbers such as \(1, 2\).*, or "all"$'):
            export_onnx("densenet-40-k12", tmp_path / "c.onnx", features=wrong)  # type: ignore[arg-type]
    assert not (tmp_path / "c.onnx").exists()


def test_the_model_classes_and_load_report_are_exported_without_importing_torch_first() -> None:
    """import densenet_spec stays torch-free (validating a spec is fast); DenseNet, FeatureNet,
    LoadReport and load_weights come when asked for."""
    import subprocess
    import sys

    code = (
        "import sys, densenet_spec; assert 'torch' not in sys.modules; "
        "from densenet_spec import DenseNet, FeatureNet, LoadReport, load_weights, state_for; "
        "assert DenseNet.__name__ == 'DenseNet' and 'torch' in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_typed_program_checks_under_mypy_strict(tmp_path: Path) -> None:
    """The annotations say what the calls return: features_only given as a bool, the load
    report, the IR a model was built from."""
    pytest.importorskip("mypy")  # run in a process of its own: mypy raises the recursion limit for good
    program = tmp_path / "typed.py"
    program.write_text(
        "from densenet_spec import DenseNet, FeatureNet, LoadReport, build_model, load_weights\n\n\n"
        "def make(flag: bool) -> DenseNet | FeatureNet:\n"
        "    return build_model('densenet-40-k12', features_only=flag)\n\n\n"
        "model = build_model('densenet-40-k12')\n"
        "report: LoadReport | None = model.load_report\n"
        "state, loaded = load_weights(model.state_dict(), model.ir)\n"
        "lines: list[str] = loaded.lines()\n"
    )
    import subprocess
    import sys

    command = [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "--cache-dir", str(tmp_path / "c")]
    run = subprocess.run([*command, str(program)], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


def test_a_backbone_of_an_optimised_ir_is_refused() -> None:
    from densenet_spec import optimize

    fast_ir, _ = optimize("densenet-40-k12")
    with pytest.raises(ValueError, match="features_only takes the plain network's IR, not an optimised one"):
        build_model(fast_ir, features_only=True)


def test_misused_entry_points_say_what_they_take(tmp_path: Path) -> None:
    """A wrong type names the argument (not pathlib's or networkx's message); infer_spec takes a
    checkpoint file as the CLI's infer does."""
    from densenet_spec import infer_spec

    for wrong in (None, 123, {"name": "x"}):
        with pytest.raises(TypeError, match="load_spec takes a spec file or a preset name, not"):
            load_spec(wrong)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="memory_efficient takes True or False, not 'no'"):
        build_model("densenet-40-k12", memory_efficient="no")  # type: ignore[arg-type]
    ir = as_ir("densenet-40-k12")
    for call in (ir.layer, ir.inputs):
        with pytest.raises(KeyError, match="'nope' is not a layer of densenet-40-k12; layers are named as modules"):
            call("nope")
    path = tmp_path / "w.pt"
    torch.save(build_model(ir, seed=0).state_dict(), path)
    assert infer_spec(path).block_configs == infer_spec(str(path)).block_configs
    assert [b.layers for b in infer_spec(path).block_configs] == [12, 12, 12]


def test_python_keeps_the_warnings_and_strict_raises_them() -> None:
    """What the README says of warnings in Python: in ir.warnings; strict=True raises them."""
    spec = {
        "name": "o",
        "growth_rate": 12,
        "blocks": [5, 5],
        "compression": 0.3,
        "input": {"size": 32},
        "stem": "cifar",
    }
    ir = as_ir(spec)
    assert [w.field for w in ir.warnings] == ["compression"] and "25 are kept (floor)" in ir.warnings[0].message
    with pytest.raises(SpecError, match="25 are kept"):
        as_ir(spec, strict=True)


def test_emit_names_an_option_its_target_does_not_take_in_python_terms() -> None:
    from densenet_spec import emit

    with pytest.raises(ValueError, match=r"^bogus does not apply to the dot target; it takes blocks, detail, dpi,"):
        emit("densenet-40-k12", "dot", {"bogus": 1})
