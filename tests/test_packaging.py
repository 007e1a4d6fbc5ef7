"""A non-editable install must find the bundled labs: build the wheel and look inside and through it."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(ROOT)],
                   check=True, capture_output=True)
    (built,) = out.glob("gaplabs-*.whl")
    return built


def test_wheel_carries_every_lab_and_the_cli(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "cli.py" in names and "grader/engine.py" in names
    for lab_yaml in (ROOT / "labs").glob("*/lab.yaml"):
        lab_id = lab_yaml.parent.name
        assert f"gaplabs_data/labs/{lab_id}/lab.yaml" in names
        assert f"gaplabs_data/labs/{lab_id}/starter.ipynb" in names
        assert any(name.startswith(f"gaplabs_data/labs/{lab_id}/checks/") for name in names)


def test_installed_copy_finds_its_labs(wheel, tmp_path):
    zipfile.ZipFile(wheel).extractall(tmp_path)
    probe = ("import sys; sys.path.insert(0, sys.argv[1]); import grader.registry as r; "
             "print(r.bundled_root()); print(' '.join(lab.id for lab in r.all_labs()))")
    result = subprocess.run([sys.executable, "-c", probe, str(tmp_path)], capture_output=True, text=True, check=True,
                            cwd=tmp_path)
    root, ids = result.stdout.splitlines()
    assert Path(root) == tmp_path / "gaplabs_data"
    assert "attention-from-scratch" in ids.split()
