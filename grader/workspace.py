"""The student's workspace: where working copies of labs live, and how they are created and reset.

Where the workspace is, first match wins:

1. the `--workspace` option of a command (`override`),
2. the `GAPLABS_WORKSPACE` environment variable,
3. `~/gaplabs` (a visible folder: students open it, back it up and look for their notebooks there).

Layout, one folder per lab so that each JupyterLab server sees only its own lab::

    <workspace>/
      .gaplabs/progress.sqlite3            grades, hints and solution views (grader/store.py)
      <lab_id>/<lab_id>.ipynb              the student's notebook
      <lab_id>/<public files>              data and helper modules shipped with the lab
      <lab_id>/backups/<lab_id>-<UTC>.ipynb  copies saved by `labs reset`

Rule that everything here keeps: the student's notebook is never overwritten without a backup.
`prepare_lab` only fills in what is missing; `reset_lab` saves a backup before restoring the starter.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from datetime import datetime, timezone
from pathlib import Path

from grader.atomic import atomic_write_bytes
from grader.errors import LabFormatError, NotebookError
from grader.registry import Lab

WORKSPACE_ENV = "GAPLABS_WORKSPACE"
DEFAULT_WORKSPACE = Path("~/gaplabs")
BACKUP_STAMP = "%Y%m%dT%H%M%SZ"  # sorts by time, no ':' so it is a valid file name on Windows too


def workspace_root(override: Path | None = None) -> Path:
    """The workspace folder (absolute): `override` > $GAPLABS_WORKSPACE > ~/gaplabs. Not created here."""
    chosen = override or os.environ.get(WORKSPACE_ENV) or DEFAULT_WORKSPACE
    return Path(chosen).expanduser().resolve()


def lab_folder(lab_id: str, workspace: Path) -> Path:
    return workspace / lab_id


def notebook_path(lab_id: str, workspace: Path) -> Path:
    """The student's copy of a lab: `<workspace>/<lab_id>/<lab_id>.ipynb`."""
    return lab_folder(lab_id, workspace) / f"{lab_id}.ipynb"


def backups_folder(lab_id: str, workspace: Path) -> Path:
    return lab_folder(lab_id, workspace) / "backups"


def _starter_bytes(lab: Lab) -> bytes:
    try:
        return lab.starter_path.read_bytes()
    except FileNotFoundError:
        raise LabFormatError(
            f"lab {lab.id!r} has no starter notebook",
            where=str(lab.starter_path),
            fix="instructors: run `labs release` to generate it; students: reinstall or update the lab pack",
        ) from None


def _copy_missing_public_files(lab: Lab, folder: Path) -> list[Path]:
    """Copy public files the folder lacks; a file the student already has (maybe edited) is kept."""
    copied = []
    for source in lab.public_files():
        target = folder / source.relative_to(lab.public_dir)
        if target.exists():
            continue
        atomic_write_bytes(target, source.read_bytes())
        shutil.copymode(source, target)
        copied.append(target)
    return copied


def prepare_lab(lab: Lab, workspace: Path) -> Path:
    """Create the student's copy of `lab` if it does not exist yet; return the notebook path.

    Resuming is the normal case: an existing notebook is left exactly as it is, and only public
    files that are missing are copied again (so deleting a data file and re-running `labs start`
    brings it back, while a student's edits to a helper module survive).
    """
    notebook = notebook_path(lab.id, workspace)
    if not notebook.exists():
        atomic_write_bytes(notebook, _starter_bytes(lab))
    _copy_missing_public_files(lab, notebook.parent)
    return notebook


def backup_path(lab_id: str, workspace: Path, now: datetime | None = None) -> Path:
    """A backup name that does not exist yet: `<lab_id>-<UTC stamp>.ipynb`, `-2`, `-3` on clashes."""
    stamp = (now or datetime.now(timezone.utc)).astimezone(timezone.utc).strftime(BACKUP_STAMP)
    folder = backups_folder(lab_id, workspace)
    candidate = folder / f"{lab_id}-{stamp}.ipynb"
    counter = 2
    while candidate.exists():  # two resets within one second
        candidate = folder / f"{lab_id}-{stamp}-{counter}.ipynb"
        counter += 1
    return candidate


def reset_lab(lab: Lab, workspace: Path, *, now: datetime | None = None) -> Path | None:
    """Back up the student's notebook, then restore the starter. Returns the backup (None: no copy yet).

    Both writes are atomic and the backup is written (and fsynced) before the notebook is replaced,
    so a crash at any point leaves the student's work in at least one of the two files. Public files
    are not reset, only re-copied where missing: they are data, and edits to them are rare and
    deliberate.
    """
    notebook = notebook_path(lab.id, workspace)
    starter = _starter_bytes(lab)
    backup = None
    if notebook.exists():
        backup = backup_path(lab.id, workspace, now)
        atomic_write_bytes(backup, notebook.read_bytes())
    atomic_write_bytes(notebook, starter)
    _copy_missing_public_files(lab, notebook.parent)
    return backup


def read_notebook(path: Path):
    """Read a notebook as nbformat v4, or raise NotebookError saying which file and what to do."""
    import nbformat  # imported here: it takes a second or more, and `labs list` never needs it

    try:
        return nbformat.read(path, as_version=4)
    except FileNotFoundError:
        raise NotebookError("the notebook does not exist", where=str(path), fix="run `labs start <lab>` to create it") from None
    except Exception as exc:  # nbformat raises several unrelated types for unreadable files
        raise NotebookError(
            f"cannot read the notebook: {exc}",
            where=str(path),
            fix="open it in JupyterLab to repair it, or `labs reset <lab>` (your copy is backed up first)",
        ) from None


def submission_sha256(path: Path) -> str:
    """Hash of the notebook file as graded: the store keeps it so attempts can be matched to files."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
