"""The command line against what a new user tried: numbers out of range, a full or closed stdout,
bad names and paths, a default file name Python cannot use, no GPU. Each answer is one line on
stderr with exit 1 (input, environment) or 2 (usage), never a traceback, and nothing written."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import onnx
import pytest
from typer.testing import CliRunner, Result

from densenet_spec import build_model, export_onnx
from densenet_spec.cli import app
from densenet_spec.schema import json_schema

RUNNER = CliRunner()
NEWEST_OPSET = onnx.defs.onnx_opset_version()
TINY = "growth_rate: 4\nblocks: [1, 1]\nstem: cifar\ninput: {size: 8}\nnum_classes: 3\n"
"""A spec (without its name) that compiles, builds and exports in well under a second."""

posix_only = pytest.mark.skipif(os.name != "posix", reason="/dev/full, closed descriptors and pipes are POSIX")


def _tiny(tmp_path: Path, name: str = "tiny") -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(f"name: {name}\n{TINY}")
    return path


def _checkpoint(tmp_path: Path, file_name: str = "tiny.pt") -> Path:
    import torch

    path = tmp_path / file_name
    torch.save(build_model(_tiny(tmp_path), seed=0).state_dict(), path)
    return path


def _one_line(result: Result, status: int, *needles: str) -> str:
    """The single stderr line of a failed command, checked for its status and words."""
    assert result.exit_code == status, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


# 1. --opset beyond what the installed onnx writes


@pytest.mark.parametrize("opset", [NEWEST_OPSET + 1, 99, 10**21, 12])
def test_opset_outside_the_installed_onnx_is_a_usage_error(tmp_path: Path, opset: int) -> None:
    out = tmp_path / "x.onnx"
    result = RUNNER.invoke(app, ["build", str(_tiny(tmp_path)), "--to", "onnx", "--opset", str(opset), "-o", str(out)])
    _one_line(result, 2, "--opset", str(opset), f"13 to {NEWEST_OPSET}")
    assert not out.exists()


def test_the_newest_opset_is_written(tmp_path: Path) -> None:
    out = tmp_path / "x.onnx"
    result = RUNNER.invoke(
        app, ["build", str(_tiny(tmp_path)), "--to", "onnx", "--opset", str(NEWEST_OPSET), "-o", str(out)]
    )
    assert result.exit_code == 0, result.stderr
    assert onnx.load(str(out)).opset_import[0].version == NEWEST_OPSET


@pytest.mark.parametrize("opset", [99, 10**21])
def test_export_onnx_refuses_the_opset_with_the_same_text(tmp_path: Path, opset: int) -> None:
    out = tmp_path / "x.onnx"
    with pytest.raises(ValueError, match=rf"^opset {opset} is out of range: .* 13 to {NEWEST_OPSET}"):
        export_onnx(_tiny(tmp_path), out, opset=opset)
    assert not out.exists()


# 2. --seed beyond torch's range


@pytest.mark.parametrize("seed", [2**64, 99999999999999999999999, -(2**63) - 1])
def test_seed_outside_torch_range_is_a_usage_error(tmp_path: Path, seed: int) -> None:
    out = tmp_path / "x.onnx"
    result = RUNNER.invoke(app, ["build", str(_tiny(tmp_path)), "--to", "onnx", f"--seed={seed}", "-o", str(out)])
    _one_line(result, 2, f"--seed {seed}", "-2**63 to 2**64 - 1")
    assert not out.exists()


@pytest.mark.parametrize("seed", [-(2**63), 2**64 - 1])
def test_seeds_at_torch_limits_build(tmp_path: Path, seed: int) -> None:
    out = tmp_path / "x.onnx"
    result = RUNNER.invoke(app, ["build", str(_tiny(tmp_path)), "--to", "onnx", f"--seed={seed}", "-o", str(out)])
    assert result.exit_code == 0, result.stderr
    assert out.is_file()


# 3. stdout full, closed, or its reader gone (a real process: CliRunner's stdout cannot fail)

STDOUT_COMMANDS = [
    ["summary", "densenet121"],
    ["summary", "densenet121", "--format", "json"],
    ["summary", "densenet121", "--format", "markdown"],
    ["presets"],
    ["--help"],
    ["--version"],
    ["schema"],
    ["validate", "densenet121"],
    ["build", "densenet-40-k12", "--to", "json", "-o", "-"],
]


def _cli(*args: str, shell_redirect: str = "", **popen: object) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "densenet_spec", *args]
    if shell_redirect:  # exec "$@" >&- : the command starts with stdout closed
        command = ["sh", "-c", f'exec "$@" {shell_redirect}', "sh", *command]
    return subprocess.run(command, stderr=subprocess.PIPE, text=True, check=False, timeout=300, **popen)  # type: ignore[call-overload,no-any-return]


@posix_only
@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
@pytest.mark.parametrize("args", STDOUT_COMMANDS, ids=lambda args: "-".join(args))
def test_full_stdout_is_one_line_and_exit_1(args: list[str]) -> None:
    with open("/dev/full", "w") as full:
        result = _cli(*args, stdout=full)
    assert result.returncode == 1, result.stderr
    assert result.stderr.splitlines() == [f"densenet-spec: cannot write to stdout: {os.strerror(28)}"]


@posix_only
@pytest.mark.parametrize("args", [["summary", "densenet121"], ["--version"], ["schema"]], ids="-".join)
def test_closed_stdout_is_one_line_and_exit_1(args: list[str]) -> None:
    result = _cli(*args, shell_redirect=">&-")
    assert result.returncode == 1, result.stderr
    assert result.stderr.splitlines() == [
        "densenet-spec: cannot write to stdout: it is closed; redirect it to a file or to /dev/null instead"
    ]


@posix_only
def test_closed_stdout_does_not_fail_a_command_that_prints_nothing_there(tmp_path: Path) -> None:
    out = tmp_path / "ir.json"
    result = _cli("build", str(_tiny(tmp_path)), "--to", "json", "-o", str(out), shell_redirect=">&-")
    assert result.returncode == 0, result.stderr
    assert out.is_file()


@posix_only
@pytest.mark.parametrize(
    "args",
    [["summary", "densenet121"], ["schema"], ["build", "densenet121", "--to", "torch", "-o", "-"], ["--help"]],
    ids="-".join,
)
def test_a_reader_gone_from_the_pipe_is_quiet(args: list[str]) -> None:
    """``densenet-spec ... | head``: the reader asked for no more, so nothing is said (status 1, as click)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "densenet_spec", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    process.stdout.close()  # before the command has written anything: its first write meets EPIPE
    _, stderr = process.communicate(timeout=300)
    assert (process.returncode, stderr) == (1, "")


# 4. infer --name


@pytest.mark.parametrize("name", ["Bad Name", "a" * 200, ""])
def test_infer_name_must_be_a_spec_name(tmp_path: Path, name: str) -> None:
    out = tmp_path / "spec.yaml"
    result = RUNNER.invoke(app, ["infer", str(_checkpoint(tmp_path)), "--name", name, "-o", str(out)])
    rule = json_schema()["properties"]["name"]
    _one_line(result, 2, f"--name {name!r}", f"1 to {rule['maxLength']} characters", rule["pattern"], "; e.g. ")
    assert not out.exists()


def test_infer_spec_in_python_refuses_a_bad_name_as_clearly() -> None:
    from densenet_spec import build_model
    from densenet_spec.infer import infer_spec

    with pytest.raises(ValueError, match=r"^name 'Bad Name': a spec name is 1 to 128 characters.*; e.g. bad-name$"):
        infer_spec(build_model("densenet-40-k12").state_dict(), name="Bad Name")


def test_infer_name_from_a_long_file_name_is_cut_to_fit(tmp_path: Path) -> None:
    ckpt = _checkpoint(tmp_path, "A" * 200 + ".pt")
    result = RUNNER.invoke(app, ["infer", str(ckpt)])
    assert result.exit_code == 0, result.stderr
    assert f"\nname: {'a' * 128}\n" in result.stdout


@pytest.mark.parametrize(
    ("output", "ok"), [("x.onnx", False), ("x.py", False), ("x.pt", False), ("x.yml", True), ("x.yaml.py", False)]
)
def test_infer_writes_yaml_only_where_the_suffix_allows_it(tmp_path: Path, output: str, ok: bool) -> None:
    out = tmp_path / output
    result = RUNNER.invoke(app, ["infer", str(_checkpoint(tmp_path)), "-o", str(out)])
    if ok:
        assert result.exit_code == 0, result.stderr
        assert out.read_text().count("\nname: ") == 1
    else:
        _one_line(result, 2, "infer writes a spec (YAML)", "name it x.yaml")
        assert not out.exists()


@pytest.mark.parametrize("name", ["ckpt.pth.tar", "ckpt.ckpt", "ckpt.bin"])
def test_output_naming_the_checkpoint_read_is_refused(tmp_path: Path, name: str) -> None:
    ckpt = _checkpoint(tmp_path, name)
    before = ckpt.read_bytes()
    result = RUNNER.invoke(app, ["infer", str(ckpt), "-o", str(ckpt)])
    _one_line(result, 2, "the checkpoint it reads", "choose another name")
    build = ["build", str(_tiny(tmp_path)), "--to", "onnx", "--weights", str(ckpt), "-o", str(ckpt)]
    _one_line(RUNNER.invoke(app, build), 2, "that names a checkpoint file")  # as any checkpoint's name
    assert ckpt.read_bytes() == before


# 5. -o: a folder's path, an empty one, a suffix of another format


@pytest.mark.parametrize("exists", [False, True])
def test_output_ending_in_a_slash_is_a_usage_error(tmp_path: Path, exists: bool) -> None:
    folder = tmp_path / "newdir"
    if exists:
        folder.mkdir()
    result = RUNNER.invoke(app, ["build", str(_tiny(tmp_path)), "--to", "json", "-o", f"{folder}/"])
    state = "is an existing folder" if exists else "does not exist"
    _one_line(result, 2, "names a folder", f"{folder} {state}", f"-o {folder / 'tiny.json'}")
    assert folder.is_dir() if exists else not folder.exists()
    if exists:
        assert list(folder.iterdir()) == []


@pytest.mark.parametrize("command", [["build", "TINY", "--to", "json"], ["schema"], ["infer", "CKPT"]], ids=str)
def test_empty_output_is_a_usage_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: list[str]) -> None:
    monkeypatch.chdir(tmp_path)
    ckpt = _checkpoint(tmp_path)
    args = [{"TINY": str(_tiny(tmp_path)), "CKPT": str(ckpt)}.get(arg, arg) for arg in command]
    before = sorted(tmp_path.iterdir())
    result = RUNNER.invoke(app, [*args, "-o", ""])
    _one_line(result, 2, "-o ''", "'-' for stdout")
    assert sorted(tmp_path.iterdir()) == before


@pytest.mark.parametrize(
    ("target", "output", "other", "renamed"),
    [("svg", "x.png", "png", "x.svg"), ("png", "x.pdf", "pdf", "x.png"), ("torch", "x.onnx", "onnx", "x.py")],
)
def test_suffix_of_another_format_is_a_usage_error(
    tmp_path: Path, target: str, output: str, other: str, renamed: str
) -> None:
    out = tmp_path / output
    result = RUNNER.invoke(app, ["build", str(_tiny(tmp_path)), "--to", target, "-o", str(out)])
    _one_line(result, 2, f"use --to {other}", f"name the file {renamed}")
    assert not out.exists()


def test_suffix_that_no_target_writes_is_the_users_choice(tmp_path: Path) -> None:
    out = tmp_path / "x.gv"
    result = RUNNER.invoke(app, ["build", str(_tiny(tmp_path)), "--to", "dot", "-o", str(out)])
    assert result.exit_code == 0, result.stderr
    assert "\ndigraph " in out.read_text()


# 6. the default name of --to torch


@pytest.mark.parametrize(
    "name",
    [
        "torch",
        "typing",
        "class",
        "import",
        "json",
        "copy",
        "numpy",
        "typing_extensions",
        "sympy",
        "yaml",
        "org",
        "tqdm",
    ],
)
def test_default_torch_file_python_cannot_use_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    spec = _tiny(tmp_path, name)
    monkeypatch.chdir(tmp_path)
    result = RUNNER.invoke(app, ["build", str(spec), "--to", "torch"])
    _one_line(result, 2, f"{name}.py", f"-o {name}_net.py")
    assert not (tmp_path / f"{name}.py").exists()


def test_default_torch_file_named_as_a_module_torch_looks_for_is_refused(tmp_path: Path) -> None:
    """opt_einsum is optional (not installed by the setup), but importing torch looks for it: beside
    an opt_einsum.py, `import torch` fails. Run as a user runs it (python -m, the current folder on
    sys.path): a rebuild of the same name there is not refused."""
    ok = _tiny(tmp_path, "tiny")
    bad = _tiny(tmp_path, "opt_einsum")
    command = [sys.executable, "-m", "densenet_spec", "build"]
    result = subprocess.run([*command, str(bad), "--to", "torch"], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 2 and "opt_einsum.py would shadow opt_einsum" in result.stderr, result.stderr
    assert not (tmp_path / "opt_einsum.py").exists()
    for _ in range(2):
        result = subprocess.run([*command, str(ok), "--to", "torch"], cwd=tmp_path, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr


def test_an_explicit_output_is_the_users_choice(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = _tiny(tmp_path, "torch")
    monkeypatch.chdir(tmp_path)
    result = RUNNER.invoke(app, ["build", str(spec), "--to", "torch", "-o", "torch.py"])
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "torch.py").is_file()


# 7. bench --device cuda without CUDA: a usage error (exit 2), as the README's exit statuses say


def test_bench_cuda_without_a_device_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    result = RUNNER.invoke(app, ["bench", str(_tiny(tmp_path)), "--device", "cuda"])
    _one_line(result, 2, "--device cuda", "no CUDA device", "use --device cpu")  # wrong usage here, not a bad file


@pytest.mark.parametrize(("target", "suffix"), [("svg", "svg"), ("pdf", "pdf"), ("heatmap", "svg"), ("heatmap", "pdf")])
def test_dpi_for_vector_output_is_a_usage_error(tmp_path: Path, target: str, suffix: str) -> None:
    out = tmp_path / f"d.{suffix}"
    args = ["build", str(_tiny(tmp_path)), "--to", target, "--dpi", "300", "-o", str(out)]
    if target == "heatmap":
        args += ["--weights", str(_checkpoint(tmp_path))]
    result = RUNNER.invoke(app, args)
    _one_line(result, 2, "--dpi")
    assert not out.exists()


@pytest.mark.parametrize("target", ["png", "dot"])
def test_dpi_for_png_and_dot_is_kept(tmp_path: Path, target: str) -> None:
    out = tmp_path / f"d.{target}"
    result = RUNNER.invoke(app, ["build", str(_tiny(tmp_path)), "--to", target, "--dpi", "150", "-o", str(out)])
    assert result.exit_code == 0, result.stderr
    if target == "dot":
        assert 'dpi="150"' in out.read_text() or "dpi=150" in out.read_text()


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--to", "torch"], "tiny.py"),
        (["--to", "torch", "--optimize"], "tiny_optimized.py"),
        (["--to", "onnx", "--optimize"], "tiny.optimized.onnx"),
        (["--to", "onnx", "--features", "all"], "tiny.features.onnx"),
        (["--to", "svg", "--detail", "layers", "--blocks", "2", "--rankdir", "TB"], "tiny.layers.block2.tb.svg"),
    ],
)
def test_default_names_keep_different_builds_apart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], expected: str
) -> None:
    spec = _tiny(tmp_path)
    monkeypatch.chdir(tmp_path)
    result = RUNNER.invoke(app, ["build", str(spec), *args])
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / expected).is_file()


def test_build_never_writes_over_a_spec(tmp_path: Path) -> None:
    spec = _tiny(tmp_path)
    before = spec.read_text()
    for output in (str(spec), str(tmp_path / "other.yml")):
        result = RUNNER.invoke(app, ["build", str(spec), "--to", "torch", "-o", output])
        _one_line(result, 2, f"-o {output}: that names a spec file")
    assert spec.read_text() == before and not (tmp_path / "other.yml").exists()


def test_an_existing_folder_as_output_is_a_usage_error(tmp_path: Path) -> None:
    result = RUNNER.invoke(app, ["build", str(_tiny(tmp_path)), "--to", "onnx", "-o", str(tmp_path)])
    _one_line(result, 2, "an existing folder; give a file name, e.g. -o ")


def test_a_title_that_looks_like_html_is_drawn_as_text(tmp_path: Path) -> None:
    out = tmp_path / "t.svg"
    result = RUNNER.invoke(app, ["build", str(_tiny(tmp_path)), "--to", "svg", "--title", "<b>", "-o", str(out)])
    assert result.exit_code == 0, result.stderr
    assert "&lt;b&gt;" in out.read_text()
