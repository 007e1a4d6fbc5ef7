"""Every committed starter is exactly what `labs release` generates from its solution.

Editing a starter by hand, or a solution without re-releasing, fails here: run `labs release <id>`.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from grader.authoring import starter_sync_problem
from grader.registry import Lab

REPO = Path(__file__).resolve().parents[1]
REPO_LABS = sorted(path.parent for path in (REPO / "labs").glob("*/lab.yaml"))


def test_the_repository_has_labs():
    assert REPO_LABS, f"no labs/<id>/lab.yaml under {REPO}: the sync test below would check nothing"


@pytest.mark.parametrize("lab_dir", REPO_LABS, ids=[path.name for path in REPO_LABS])
def test_committed_starter_matches_its_solution(lab_dir):
    lab = Lab(dir=lab_dir, root=REPO, origin="bundled")
    problem = starter_sync_problem(lab)
    assert problem is None, f"{lab.id}: {problem}"


@pytest.mark.parametrize("lab_dir", REPO_LABS, ids=[path.name for path in REPO_LABS])
def test_committed_starter_is_a_valid_notebook_without_solution_markers(lab_dir):
    starter = lab_dir / "starter.ipynb"
    if not starter.is_file():
        pytest.fail(f"{starter} is missing: run `labs release {lab_dir.name}`")
    notebook = nbformat.read(starter, as_version=4)
    nbformat.validate(notebook)
    for number, cell in enumerate(notebook.cells, start=1):
        assert "### BEGIN SOLUTION" not in cell.source, f"{starter}, cell {number}: a solution region shipped"
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, f"{starter}, cell {number}: outputs shipped"
