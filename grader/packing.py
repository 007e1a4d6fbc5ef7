"""`labs pack`: copy labs into a pack root for students (starters only) or instructors (everything).

A pack is a pack root like the repository: `<DIR>/labs/<id>/...`, for instructors also
`<DIR>/solutions/<id>/...`, plus `<DIR>/gaplabs-pack.json`, a manifest listing every file with its
sha256 (format in docs/writing-a-lab.md; `labs fetch` verifies it).

The student pack is an allow-list, never a deny-list: lab.yaml, starter.ipynb and public/. A new
kind of hidden file added to a lab later (notes, a grading conftest, data for checks) stays out
unless it is put in public/. The pack is built in a temporary folder beside DIR and renamed into
place, so an interrupted run leaves no half pack that looks complete.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Literal

import grader
from grader.authoring import starter_sync_problem
from grader.errors import GaplabsError, LabFormatError
from grader.registry import Lab

PackKind = Literal["student", "instructor"]
MANIFEST_NAME = "gaplabs-pack.json"
PACK_FORMAT = "gaplabs-pack"
PACK_FORMAT_VERSION = 1
# Editor and interpreter droppings never belong in a pack.
IGNORED_PARTS = {"__pycache__", ".ipynb_checkpoints", ".pytest_cache", ".DS_Store"}
IGNORED_SUFFIXES = {".pyc", ".pyo"}


@dataclass(frozen=True)
class PackResult:
    dest: Path
    kind: PackKind
    manifest: dict

    @property
    def files(self) -> list[str]:
        return [entry["path"] for entry in self.manifest["files"]]


def _wanted(relative: Path) -> bool:
    return not (IGNORED_PARTS & set(relative.parts)) and relative.suffix not in IGNORED_SUFFIXES


def _tree(folder: Path, *, must_stay_inside: Path) -> list[Path]:
    """Files under `folder`; a symlink that points outside `must_stay_inside` is refused."""
    if not folder.is_dir():
        return []
    files = []
    for path in sorted(folder.rglob("*")):
        if not _wanted(path.relative_to(folder)):
            continue
        if not path.resolve().is_relative_to(must_stay_inside.resolve()):
            raise LabFormatError(
                f"{path.name} links to {path.resolve()}, outside {must_stay_inside}",
                where=str(path),
                fix="copy the file in instead of linking it: a link could pull hidden material into a pack",
            )
        if path.is_file():
            files.append(path)
    return files


def student_files(lab: Lab) -> list[tuple[Path, str]]:
    """(source, path inside the pack) of everything a student gets for `lab`."""
    base = PurePosixPath("labs", lab.id)
    if not lab.starter_path.is_file():
        raise LabFormatError("the lab has no starter.ipynb", where=str(lab.dir), fix=f"run `labs release {lab.id}`")
    files = [(lab.dir / "lab.yaml", str(base / "lab.yaml")), (lab.starter_path, str(base / "starter.ipynb"))]
    for path in _tree(lab.public_dir, must_stay_inside=lab.public_dir):
        files.append((path, str(base / "public" / path.relative_to(lab.public_dir).as_posix())))
    return files


def instructor_files(lab: Lab) -> list[tuple[Path, str]]:
    """Everything of `lab`: the lab folder (checks, mutants, ...) and its solution folder."""
    if not lab.solution_path.is_file():
        raise LabFormatError(
            "the lab has no solution notebook, so it cannot go into an instructor pack",
            where=str(lab.solution_path),
            fix="pack it from a checkout that holds solutions/",
        )
    files = []
    for folder, base in (
        (lab.dir, PurePosixPath("labs", lab.id)),
        (lab.solution_dir, PurePosixPath("solutions", lab.id)),
    ):
        for path in _tree(folder, must_stay_inside=folder):
            files.append((path, str(base / path.relative_to(folder).as_posix())))
    return files


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _check_ready(lab: Lab) -> None:
    """A lab whose starter lags behind its solution must not ship (students would get old stubs)."""
    lab.spec  # noqa: B018 - loading it raises LabFormatError for a broken lab.yaml
    if lab.solution_path.is_file():
        problem = starter_sync_problem(lab)
        if problem:
            raise LabFormatError(
                problem, where=str(lab.starter_path), fix=f"run `labs release {lab.id}`, then pack again"
            )


def _prepare_destination(dest: Path) -> None:
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise GaplabsError(
            f"{dest} already exists and is not an empty folder",
            where=str(dest),
            fix="choose a new folder for the pack, or remove this one first",
        )


def pack_labs(labs: Sequence[Lab], *, dest: Path, kind: PackKind) -> PackResult:
    """Write the pack for `labs` into the new folder `dest` and return its manifest."""
    if not labs:
        raise GaplabsError("no labs to pack", where="labs pack", fix="name at least one lab id")
    dest = Path(dest)
    _prepare_destination(dest)
    selected: list[tuple[Path, str]] = []
    for lab in labs:
        _check_ready(lab)
        selected += student_files(lab) if kind == "student" else instructor_files(lab)
    selected.sort(key=lambda item: item[1])

    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
    try:
        entries = []
        for source, relative in selected:
            target = staging / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)  # contents only: no permissions or owners from the source tree
            entries.append({"path": relative, "sha256": sha256_of(target), "size": target.stat().st_size})
        manifest = {
            "format": PACK_FORMAT,
            "format_version": PACK_FORMAT_VERSION,
            "kind": kind,
            "gaplabs_version": grader.__version__,
            "labs": [{"id": lab.id, "version": lab.spec.version, "title": lab.spec.title} for lab in labs],
            "files": entries,
        }
        (staging / MANIFEST_NAME).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        if dest.exists():
            dest.rmdir()  # empty, checked above
        os.replace(staging, dest)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return PackResult(dest=dest, kind=kind, manifest=manifest)
