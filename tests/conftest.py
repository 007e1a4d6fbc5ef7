"""Shared fixtures: the toy fixture lab, and notebooks built from code strings."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

# The fixture lab's checks are graded by the engine, not collected as tests of the project.
collect_ignore = ["fixtures"]

ROOT = Path(__file__).resolve().parent.parent
FIXTURE_PACK = ROOT / "tests" / "fixtures" / "pack"


def make_notebook(path: Path, cells: list[str], tags: dict[int, list[str]] | None = None) -> Path:
    """Write a v4 notebook whose code cells hold `cells` (a string starting '#md ' is markdown)."""
    tags = tags or {}
    nb_cells = []
    for index, source in enumerate(cells):
        if source.startswith("#md "):
            nb_cells.append({"cell_type": "markdown", "metadata": {}, "source": source[4:], "id": f"m{index}"})
        else:
            nb_cells.append({"cell_type": "code", "metadata": {"tags": tags.get(index, [])}, "source": source,
                             "outputs": [], "execution_count": None, "id": f"c{index}"})
    notebook = {"nbformat": 4, "nbformat_minor": 5, "cells": nb_cells,
                "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}}
    path.write_text(json.dumps(notebook))
    return path


def solution_cells() -> list[str]:
    data = json.loads((FIXTURE_PACK / "solutions" / "toy-lab" / "solution.ipynb").read_text())
    return ["".join(c["source"]) if isinstance(c["source"], list) else c["source"]
            for c in data["cells"] if c["cell_type"] == "code"]


@pytest.fixture
def toy_lab(monkeypatch):
    monkeypatch.setenv("GAPLABS_LABS_PATH", str(FIXTURE_PACK))
    from grader.registry import find_lab

    return find_lab("toy-lab")


@pytest.fixture
def toy_notebook(tmp_path):
    """Build a toy-lab notebook: the solution's cells plus `extra` cells appended."""

    def build(*extra: str, name: str = "submission.ipynb", replace: dict[int, str] | None = None) -> Path:
        cells = solution_cells()
        for index, source in (replace or {}).items():
            cells[index] = source
        return make_notebook(tmp_path / name, cells + list(extra))

    return build


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory, monkeypatch):
    """No test reads or writes the real ~/.gaplabs or ~/gaplabs."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("GAPLABS_HOME", str(home / ".gaplabs"))
    monkeypatch.setenv("GAPLABS_WORKSPACE", str(home / "gaplabs"))
    yield
    os.environ.pop("GAPLABS_TEST_MARKER", None)
