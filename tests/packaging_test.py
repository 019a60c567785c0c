"""A regular (non-editable) install ships the presets and no tests."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).parent.parent


@pytest.mark.slow
def test_wheel_ships_presets_and_loads_them_by_name(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(REPO)]
    subprocess.run(build, check=True, capture_output=True)
    (wheel,) = wheels.glob("densenet_spec-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "densenet_spec/specs/densenet121.yaml" in names
    assert not [n for n in names if n.endswith("_test.py")]
    target = tmp_path / "site"
    install = [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)]
    subprocess.run(install, check=True, capture_output=True)
    dependencies = sysconfig.get_paths()["purelib"]
    script = (
        "import densenet_spec, sys; from densenet_spec import compile_spec, load_spec;"
        "assert densenet_spec.__file__.startswith(sys.argv[1]), densenet_spec.__file__;"
        "print(compile_spec(load_spec('densenet-bc-100-k12')).params)"
    )
    env = {"PYTHONPATH": f"{target}:{dependencies}", "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, "-c", script, str(target)], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "769162"
