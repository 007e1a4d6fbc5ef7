"""The student's workspace: where it is, creating a copy, resuming it, and resetting it with a backup."""

from __future__ import annotations

import re
from datetime import datetime, timezone
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

import grader.workspace as workspace
from grader.errors import LabFormatError, NotebookError
from grader.registry import Lab

LAB_YAML = """\
id: demo-lab
title: Demo lab
summary: Add two numbers.
version: 1.0.0
difficulty: intro
minutes: 5
checks:
  - id: add
    title: add works
    points: 1
"""


@pytest.fixture
def lab(tmp_path: Path) -> Lab:
    """A lab with a starter and two public files, one of them in a subfolder."""
    lab_dir = tmp_path / "pack" / "labs" / "demo-lab"
    (lab_dir / "public" / "data").mkdir(parents=True)
    (lab_dir / "lab.yaml").write_text(LAB_YAML)
    (lab_dir / "public" / "helper.py").write_text("VALUE = 41\n")
    (lab_dir / "public" / "data" / "numbers.csv").write_text("a,b\n1,2\n")
    starter = new_notebook(cells=[new_markdown_cell("# Demo"), new_code_cell("def add(a, b):\n    raise NotImplementedError")])
    nbformat.write(starter, lab_dir / "starter.ipynb")
    return Lab(dir=lab_dir, root=tmp_path / "pack", origin="path:test")


def _edit(notebook: Path, source: str) -> None:
    nb = nbformat.read(notebook, as_version=4)
    nb.cells[1].source = source
    nbformat.write(nb, notebook)


def test_workspace_root_prefers_option_then_environment_then_home(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv(workspace.WORKSPACE_ENV, raising=False)
    assert workspace.workspace_root() == (tmp_path / "home" / "gaplabs").resolve()
    monkeypatch.setenv(workspace.WORKSPACE_ENV, str(tmp_path / "from-env"))
    assert workspace.workspace_root() == (tmp_path / "from-env").resolve()
    assert workspace.workspace_root(tmp_path / "from-option") == (tmp_path / "from-option").resolve()


def test_workspace_root_is_absolute_and_expands_the_home_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    assert workspace.workspace_root(Path("~/ws")) == (tmp_path / "ws").resolve()
    assert workspace.workspace_root(Path("relative")).is_absolute()


def test_notebook_path_is_one_folder_per_lab(tmp_path):
    assert workspace.notebook_path("demo-lab", tmp_path) == tmp_path / "demo-lab" / "demo-lab.ipynb"


def test_prepare_lab_copies_the_starter_and_public_files(lab, tmp_path):
    ws = tmp_path / "ws"
    notebook = workspace.prepare_lab(lab, ws)
    assert notebook == ws / "demo-lab" / "demo-lab.ipynb"
    assert notebook.read_bytes() == lab.starter_path.read_bytes()
    assert (ws / "demo-lab" / "helper.py").read_text() == "VALUE = 41\n"
    assert (ws / "demo-lab" / "data" / "numbers.csv").read_text() == "a,b\n1,2\n", "public subfolders must keep their layout"


def test_prepare_lab_resumes_without_touching_the_students_work(lab, tmp_path):
    ws = tmp_path / "ws"
    notebook = workspace.prepare_lab(lab, ws)
    _edit(notebook, "def add(a, b):\n    return a + b  # my work")
    (ws / "demo-lab" / "helper.py").write_text("VALUE = 42  # edited by the student\n")
    (ws / "demo-lab" / "data" / "numbers.csv").unlink()
    edited = notebook.read_bytes()

    assert workspace.prepare_lab(lab, ws) == notebook
    assert notebook.read_bytes() == edited, "an existing notebook must never be overwritten"
    assert (ws / "demo-lab" / "helper.py").read_text().startswith("VALUE = 42"), "an edited public file must be kept"
    assert (ws / "demo-lab" / "data" / "numbers.csv").exists(), "a deleted public file should come back"


def test_prepare_lab_without_a_starter_says_how_to_fix_it(lab, tmp_path):
    lab.starter_path.unlink()
    with pytest.raises(LabFormatError) as caught:
        workspace.prepare_lab(lab, tmp_path / "ws")
    assert "starter" in caught.value.what and caught.value.where == str(lab.starter_path)
    assert "labs release" in caught.value.fix


def test_reset_backs_up_the_notebook_then_restores_the_starter(lab, tmp_path):
    ws = tmp_path / "ws"
    notebook = workspace.prepare_lab(lab, ws)
    _edit(notebook, "def add(a, b):\n    return a + b  # my work")
    edited = notebook.read_bytes()

    backup = workspace.reset_lab(lab, ws, now=datetime(2025, 3, 4, 5, 6, 7, tzinfo=timezone.utc))
    assert backup == ws / "demo-lab" / "backups" / "demo-lab-20250304T050607Z.ipynb"
    assert backup.read_bytes() == edited
    assert nbformat.read(backup, as_version=4).cells[1].source.endswith("# my work"), "the backup must be a readable notebook"
    assert notebook.read_bytes() == lab.starter_path.read_bytes()


def test_two_resets_in_one_second_keep_both_backups(lab, tmp_path):
    ws = tmp_path / "ws"
    notebook = workspace.prepare_lab(lab, ws)
    moment = datetime(2025, 1, 1, tzinfo=timezone.utc)
    _edit(notebook, "first = 1")
    first = workspace.reset_lab(lab, ws, now=moment)
    _edit(notebook, "second = 2")
    second = workspace.reset_lab(lab, ws, now=moment)
    assert first != second
    assert "first = 1" in first.read_text() and "second = 2" in second.read_text()


def test_reset_uses_the_current_utc_time_in_the_backup_name(lab, tmp_path):
    ws = tmp_path / "ws"
    workspace.prepare_lab(lab, ws)
    backup = workspace.reset_lab(lab, ws)
    assert re.fullmatch(r"demo-lab-\d{8}T\d{6}Z\.ipynb", backup.name), backup.name


def test_reset_without_a_copy_creates_one_and_backs_up_nothing(lab, tmp_path):
    ws = tmp_path / "ws"
    assert workspace.reset_lab(lab, ws) is None
    assert workspace.notebook_path("demo-lab", ws).read_bytes() == lab.starter_path.read_bytes()
    assert not (ws / "demo-lab" / "backups").exists()


def test_a_crash_while_restoring_the_starter_loses_nothing(lab, tmp_path, monkeypatch):
    ws = tmp_path / "ws"
    notebook = workspace.prepare_lab(lab, ws)
    _edit(notebook, "precious = True")
    edited = notebook.read_bytes()
    real_write = workspace.atomic_write_bytes

    def crash_on_restore(path, data):
        if Path(path) == notebook:
            raise KeyboardInterrupt  # Ctrl-C between the backup and the restore
        real_write(path, data)

    monkeypatch.setattr(workspace, "atomic_write_bytes", crash_on_restore)
    with pytest.raises(KeyboardInterrupt):
        workspace.reset_lab(lab, ws)
    assert notebook.read_bytes() == edited
    [backup] = (ws / "demo-lab" / "backups").iterdir()
    assert backup.read_bytes() == edited


def test_read_notebook_names_the_file_when_it_is_not_a_notebook(tmp_path):
    broken = tmp_path / "broken.ipynb"
    broken.write_text("{ this is not json")
    with pytest.raises(NotebookError) as caught:
        workspace.read_notebook(broken)
    assert caught.value.where == str(broken) and "labs reset" in caught.value.fix
    with pytest.raises(NotebookError, match="does not exist"):
        workspace.read_notebook(tmp_path / "missing.ipynb")


def test_submission_hash_changes_with_the_content(tmp_path):
    path = tmp_path / "nb.ipynb"
    path.write_text("one")
    first = workspace.submission_sha256(path)
    assert re.fullmatch(r"[0-9a-f]{64}", first)
    path.write_text("two")
    assert workspace.submission_sha256(path) != first
