"""The README's interop sections run as written: fine-tuning on 1-channel images, and the backbone.

torchvision does not import here, so its densenet121 checkpoint (the `console` block) is stood in
for by our densenet121's state_dict, whose keys and shapes are torchvision's.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from densenet_spec import SpecError, build_model

README = Path(__file__).parent.parent / "README.md"
SECTIONS = ("## Fine-tune a pretrained densenet121 on 1-channel images", "## Use as a backbone")


def _section(title: str) -> str:
    text = README.read_text()
    start = text.index(title)
    end = text.find("\n## ", start + len(title))
    return text[start:end]


def _blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.S)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("readme")
    torch.save(build_model("densenet121", seed=0).state_dict(), path / "densenet121.pth")
    for title in SECTIONS:
        for text in _blocks(_section(title), "yaml"):
            name = re.search(r"^name: (\S+)$", text, flags=re.M)
            assert name is not None
            (path / f"{name.group(1)}.yaml").write_text(text)
    return path


def _run_commands(text: str, cwd: Path) -> list[str]:
    outputs = []
    for line in text.splitlines():
        command = line.split("#", 1)[0].strip()
        if not command:
            continue
        argv = shlex.split(command)
        assert argv[0] == "densenet-spec", command
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)}
        done = subprocess.run(
            [sys.executable, "-m", "densenet_spec", *argv[1:]], cwd=cwd, capture_output=True, text=True, env=env
        )
        assert done.returncode == 0, f"{command}\n{done.stderr}"
        outputs.append(done.stderr)
    return outputs


@pytest.mark.parametrize("title", SECTIONS)
def test_sections_have_runnable_blocks(title: str) -> None:
    text = _section(title)
    assert _blocks(text, "bash") and _blocks(text, "python")


def test_fine_tune_commands_and_code_run(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = _section(SECTIONS[0])
    (bash,) = _blocks(text, "bash")
    outputs = _run_commands(bash, workdir)
    assert "features.conv0.weight from 3 to 1 input channels" in outputs[1]
    assert "stem: {kind: imagenet, channels: 64}" in (workdir / "found.yaml").read_text()
    assert (workdir / "gray.onnx").stat().st_size > 20_000_000
    (code,) = _blocks(text, "python")
    monkeypatch.chdir(workdir)
    namespace: dict[str, object] = {}
    exec(compile(code, "README.md", "exec"), namespace)
    model = namespace["model"]
    assert isinstance(model, torch.nn.Module) and model.classifier.weight.shape == (10, 1024)  # type: ignore[union-attr]


def test_fine_tune_without_adapt_is_refused_with_the_advice(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(workdir)
    with pytest.raises(SpecError) as info:
        build_model("densenet121-gray.yaml", weights="densenet121.pth")
    assert "pass --adapt (adapt=True)" in info.value.problems[-1].message


def test_backbone_code_and_export_run(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = _section(SECTIONS[1])
    (code,) = _blocks(text, "python")
    monkeypatch.chdir(workdir)
    namespace: dict[str, object] = {}
    exec(compile(code, "README.md", "exec"), namespace)
    assert tuple(namespace["cam"].shape) == (1, 4, 4)  # type: ignore[attr-defined]
    (bash,) = _blocks(text, "bash")
    _run_commands(bash, workdir)
    import onnx

    model = onnx.load(str(workdir / "backbone.onnx"))
    assert [o.name for o in model.graph.output] == ["feature1", "feature2", "feature3", "feature4"]


def test_mismatch_example_is_what_the_tool_prints(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    example = re.search(r"^d169\.pth: the checkpoint is .*$", README.read_text(), flags=re.M)
    assert example is not None
    torch.save(build_model("densenet169", seed=0).state_dict(), tmp_path / "d169.pth")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SpecError) as info:
        build_model("densenet121", weights="d169.pth")
    assert str(info.value.problems[-1]) == example.group(0)
