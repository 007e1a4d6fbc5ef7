"""`labs pack`: what a student pack may hold (and nothing more), instructor packs, the manifest."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from grader.authoring import BEGIN_MARKER, END_MARKER, cell_source, new_lab, read_notebook
from grader.errors import GaplabsError, LabFormatError
from grader.packing import MANIFEST_NAME, pack_labs, sha256_of, student_files
from grader.packs import PackError, verify_manifest
from grader.registry import EXTRA_ROOTS_ENV, HOME_ENV, Lab

REPO = Path(__file__).resolve().parents[1]
REPO_LABS = sorted(path.parent for path in (REPO / "labs").glob("*/lab.yaml"))


def solution_only_lines(solution_path: Path) -> set[str]:
    """Lines that appear inside the solution's marked regions and nowhere else in the notebook."""
    inside, outside = set(), set()
    for cell in read_notebook(solution_path)["cells"]:
        in_region = False
        for line in cell_source(cell).splitlines():
            if BEGIN_MARKER.match(line):
                in_region = True
            elif END_MARKER.match(line):
                in_region = False
            else:
                (inside if in_region else outside).add(line.strip())
    return {line for line in inside - outside if len(line) >= 12 and not line.startswith("#")}


def packed_files(dest: Path) -> set[str]:
    return {path.relative_to(dest).as_posix() for path in dest.rglob("*") if path.is_file()}


@pytest.fixture
def lab(tmp_path, monkeypatch) -> Lab:
    """The scaffold plus the kinds of file a real lab grows: public data, helpers, hidden extras."""
    root = tmp_path / "root"
    new_lab("demo-lab", root=root)
    monkeypatch.setenv(EXTRA_ROOTS_ENV, str(root))
    monkeypatch.setenv(HOME_ENV, str(tmp_path / "home"))
    lab_dir, solution_dir = root / "labs" / "demo-lab", root / "solutions" / "demo-lab"
    extras = {
        lab_dir / "public" / "data.csv": "x,y\n1,2\n",
        lab_dir / "public" / "tiny" / "model.py": "WIDTH = 8\n",
        lab_dir / "public" / "__pycache__" / "model.cpython-311.pyc": "bytecode",
        lab_dir / "public" / ".ipynb_checkpoints" / "x-checkpoint.ipynb": "{}",
        lab_dir / "checks" / "conftest.py": "REFERENCE = 'hidden'\n",
        lab_dir / "checks" / "reference_data.pt": "hidden tensors",
        lab_dir / "NOTES.md": "grading notes for instructors\n",
        lab_dir / ".answers": "42\n",
        solution_dir / "reference_outputs.json": "{}\n",
    }
    for path, text in extras.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return Lab(dir=lab_dir, root=root, origin="test")


# ---------------------------------------------------------------------------------------------
# Student packs


def test_student_pack_holds_exactly_the_student_material(lab, tmp_path):
    dest = tmp_path / "students"
    result = pack_labs([lab], dest=dest, kind="student")
    expected = {
        "labs/demo-lab/lab.yaml",
        "labs/demo-lab/starter.ipynb",
        "labs/demo-lab/public/data.csv",
        "labs/demo-lab/public/tiny/model.py",
    }
    assert packed_files(dest) == expected | {MANIFEST_NAME}
    assert set(result.files) == expected


def test_no_hidden_file_or_solution_code_leaks_into_a_student_pack(lab, tmp_path):
    dest = tmp_path / "students"
    pack_labs([lab], dest=dest, kind="student")
    files = packed_files(dest)
    for hidden in ("checks", "mutants", "solutions", "NOTES.md", ".answers", "__pycache__", ".ipynb_checkpoints"):
        assert not [name for name in files if hidden in name.split("/")], f"{hidden} leaked into the student pack"
    secrets = solution_only_lines(lab.solution_path)
    assert "e = torch.exp(shifted)" in secrets, "the leak probe must look for real solution code"
    hidden_texts = [p.read_text() for p in (*lab.checks_dir.glob("*.py"), *lab.mutants_dir.glob("*.py"))]
    for name in files:
        text = (dest / name).read_text(errors="replace")
        leaked = [line for line in secrets if line in text]
        assert not leaked, f"{name} contains solution code: {leaked}"
        assert not [hidden for hidden in hidden_texts if hidden.strip() in text], f"{name} contains a hidden file"
        assert "BEGIN SOLUTION" not in text, name


def test_manifest_lists_every_file_with_its_sha256_and_verifies(lab, tmp_path):
    dest = tmp_path / "students"
    pack_labs([lab], dest=dest, kind="student")
    manifest = json.loads((dest / MANIFEST_NAME).read_text())
    assert manifest["format"] == "gaplabs-pack" and manifest["format_version"] == 1 and manifest["kind"] == "student"
    assert manifest["labs"] == [{"id": "demo-lab", "version": "0.1.0", "title": "Demo lab"}]
    paths = [entry["path"] for entry in manifest["files"]]
    assert paths == sorted(paths)
    for entry in manifest["files"]:
        assert entry["sha256"] == sha256_of(dest / entry["path"])
        assert entry["size"] == (dest / entry["path"]).stat().st_size
    assert verify_pack(dest) == []


def verify_pack(root: Path) -> list[str]:
    """The manifest check `labs fetch` runs, as a list of problems (empty when the pack is intact)."""
    try:
        verify_manifest(root, where=str(root))
    except PackError as exc:
        return [exc.what]
    return []


@pytest.mark.parametrize("tamper, problem", [
    (lambda dest: (dest / "labs/demo-lab/public/data.csv").write_text("x,y\n9,9\n"),
     "'labs/demo-lab/public/data.csv' does not match the manifest"),
    (lambda dest: (dest / "labs/demo-lab/public/tiny/model.py").unlink(),
     "the manifest lists 'labs/demo-lab/public/tiny/model.py' but the pack has no such file"),
    (lambda dest: (dest / "labs/demo-lab/public/extra.py").write_text("print('surprise')\n"),
     "'labs/demo-lab/public/extra.py' is in the pack but not in its manifest"),
])
def test_verify_pack_notices_tampering_extra_and_missing_files(lab, tmp_path, tamper, problem):
    dest = tmp_path / "students"
    pack_labs([lab], dest=dest, kind="student")
    tamper(dest)
    problems = verify_pack(dest)
    assert len(problems) == 1 and problems[0].startswith(problem), problems


def test_packing_twice_gives_the_same_manifest(lab, tmp_path):
    first = pack_labs([lab], dest=tmp_path / "a", kind="student")
    second = pack_labs([lab], dest=tmp_path / "b", kind="student")
    assert (tmp_path / "a" / MANIFEST_NAME).read_bytes() == (tmp_path / "b" / MANIFEST_NAME).read_bytes()
    assert first.manifest == second.manifest


def test_a_symlink_out_of_public_is_refused(lab, tmp_path):
    (lab.public_dir / "answers.ipynb").symlink_to(lab.solution_path)
    with pytest.raises(LabFormatError, match="outside"):
        pack_labs([lab], dest=tmp_path / "students", kind="student")
    assert not (tmp_path / "students").exists()


def test_a_stale_starter_or_a_missing_one_is_not_packed(lab, tmp_path):
    lab.starter_path.write_text(lab.starter_path.read_text().replace("Try it", "Try this"))
    with pytest.raises(LabFormatError, match="labs release demo-lab"):
        pack_labs([lab], dest=tmp_path / "students", kind="student")
    lab.starter_path.unlink()
    with pytest.raises(LabFormatError, match="starter"):
        pack_labs([lab], dest=tmp_path / "students", kind="student")
    assert not (tmp_path / "students").exists()


def test_destination_must_be_new_or_empty(lab, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    pack_labs([lab], dest=empty, kind="student")
    assert (empty / MANIFEST_NAME).is_file()
    with pytest.raises(GaplabsError, match="not an empty folder"):
        pack_labs([lab], dest=empty, kind="student")
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")], "no staging folder left behind"


# ---------------------------------------------------------------------------------------------
# Instructor packs


def test_instructor_pack_holds_everything_but_caches(lab, tmp_path):
    dest = tmp_path / "instructors"
    result = pack_labs([lab], dest=dest, kind="instructor")
    files = packed_files(dest)
    for expected in (
        "labs/demo-lab/lab.yaml",
        "labs/demo-lab/starter.ipynb",
        "labs/demo-lab/checks/test_softmax.py",
        "labs/demo-lab/checks/conftest.py",
        "labs/demo-lab/checks/reference_data.pt",
        "labs/demo-lab/mutants/no_max_subtraction.py",
        "labs/demo-lab/public/data.csv",
        "labs/demo-lab/NOTES.md",
        "labs/demo-lab/.answers",
        "solutions/demo-lab/solution.ipynb",
        "solutions/demo-lab/reference_outputs.json",
    ):
        assert expected in files, expected
    assert not [name for name in files if "__pycache__" in name or ".ipynb_checkpoints" in name]
    assert result.manifest["kind"] == "instructor" and verify_pack(dest) == []
    # The instructor pack is a pack root: the lab in it is complete and its starter in sync.
    packed = Lab(dir=dest / "labs" / "demo-lab", root=dest, origin="test")
    assert packed.spec.id == "demo-lab" and packed.solution_path.is_file()
    from grader.authoring import starter_sync_problem

    assert starter_sync_problem(packed) is None


# ---------------------------------------------------------------------------------------------
# The command line


def test_cli_pack_needs_exactly_one_kind(lab, tmp_path):
    from cli import app

    runner = CliRunner()
    neither = runner.invoke(app, ["pack", "demo-lab"])
    both = runner.invoke(
        app, ["pack", "demo-lab", "--student", str(tmp_path / "s"), "--instructor", str(tmp_path / "i")]
    )
    assert neither.exit_code == 2 and both.exit_code == 2 and "exactly one" in both.output
    ok = runner.invoke(app, ["pack", "demo-lab", "--student", str(tmp_path / "s")])
    assert ok.exit_code == 0, ok.output
    assert "student pack of 1 lab(s), 4 files" in ok.output
    assert verify_pack(tmp_path / "s") == []


# ---------------------------------------------------------------------------------------------
# Every lab of the repository


@pytest.mark.parametrize("lab_dir", REPO_LABS, ids=[path.name for path in REPO_LABS])
def test_student_selection_of_every_repo_lab_is_student_material_only(lab_dir):
    lab = Lab(dir=lab_dir, root=REPO, origin="bundled")
    if not lab.starter_path.is_file():
        pytest.skip(f"{lab.id} has no starter yet (run `labs release {lab.id}`)")
    allowed = {lab.dir / "lab.yaml", lab.starter_path}
    for source, relative in student_files(lab):
        assert source in allowed or source.is_relative_to(lab.public_dir), f"{source} is not student material"
        assert relative.startswith(f"labs/{lab.id}/") and "/checks/" not in relative and "/mutants/" not in relative
    if lab.solution_path.is_file():
        starter_lines = {line.strip() for cell in read_notebook(lab.starter_path)["cells"]
                         for line in cell_source(cell).splitlines()}
        leaked = sorted(solution_only_lines(lab.solution_path) & starter_lines)
        assert not leaked, f"{lab.starter_path} contains solution code: {leaked}"


def test_symlinked_public_folders_are_refused_too(lab, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("hidden")
    os.symlink(outside, lab.public_dir / "linked")
    with pytest.raises(LabFormatError, match="outside"):
        student_files(lab)
