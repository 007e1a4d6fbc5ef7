"""Where labs live: the bundled catalog, installed lab packs and extra roots, found by lab id."""

from __future__ import annotations

import difflib
import hashlib
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from grader.errors import LabNotFound
from grader.labspec import LabSpec, load_lab_spec

# A "pack root" is a folder holding labs/<id>/ and, for instructors, solutions/<id>/.
EXTRA_ROOTS_ENV = "GAPLABS_LABS_PATH"  # os.pathsep-separated pack roots, searched first
HOME_ENV = "GAPLABS_HOME"  # where `labs fetch` installs packs; default ~/.gaplabs


def bundled_root() -> Path:
    """The pack root shipped with gaplabs: the source tree, or the copy inside an installed wheel."""
    here = Path(__file__).resolve().parent
    source_tree = here.parent
    if (source_tree / "labs").is_dir() and (source_tree / "pyproject.toml").is_file():
        return source_tree
    return here.parent / "gaplabs_data"


def gaplabs_home() -> Path:
    return Path(os.environ.get(HOME_ENV) or Path.home() / ".gaplabs").expanduser()


def pack_roots() -> list[tuple[Path, str]]:
    """Every pack root with a short description of where it came from, in search order."""
    roots: list[tuple[Path, str]] = []
    for entry in filter(None, os.environ.get(EXTRA_ROOTS_ENV, "").split(os.pathsep)):
        roots.append((Path(entry).expanduser().resolve(), f"path:{entry}"))
    roots.append((bundled_root(), "bundled"))
    packs = gaplabs_home() / "packs"
    if packs.is_dir():
        for pack in sorted(packs.iterdir()):
            if pack.is_dir():
                roots.append((pack, f"pack:{pack.name}"))
    return roots


@dataclass(frozen=True)
class Lab:
    """One lab on disk. `origin` says where it was found ("bundled", "pack:<name>", "path:<dir>")."""

    dir: Path
    root: Path
    origin: str

    @property
    def id(self) -> str:
        return self.dir.name

    @cached_property
    def spec(self) -> LabSpec:
        return load_lab_spec(self.dir / "lab.yaml")

    @property
    def starter_path(self) -> Path:
        return self.dir / "starter.ipynb"

    @property
    def checks_dir(self) -> Path:
        return self.dir / "checks"

    @property
    def mutants_dir(self) -> Path:
        return self.dir / "mutants"

    @property
    def public_dir(self) -> Path:
        return self.dir / "public"

    @property
    def solution_dir(self) -> Path:
        return self.root / "solutions" / self.id

    @property
    def solution_path(self) -> Path:
        return self.solution_dir / "solution.ipynb"

    def trusted_digest(self) -> str:
        """A hash of what decides grades (lab.yaml and the checks), to notice tampering during grading."""
        digest = hashlib.sha256()
        files = [self.dir / "lab.yaml"]
        if self.checks_dir.is_dir():
            files += sorted(p for p in self.checks_dir.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
        for path in files:
            digest.update(str(path.relative_to(self.dir)).encode() + b"\0")
            try:
                digest.update(path.read_bytes())
            except OSError:
                digest.update(b"<unreadable>")
        return digest.hexdigest()

    def public_files(self) -> list[Path]:
        """Files the student gets next to the notebook (relative layout kept)."""
        if not self.public_dir.is_dir():
            return []
        return sorted(p for p in self.public_dir.rglob("*") if p.is_file() and "__pycache__" not in p.parts)


def all_labs() -> list[Lab]:
    """Every lab, first root wins when two roots hold the same id; sorted by id."""
    found: dict[str, Lab] = {}
    for root, origin in pack_roots():
        labs_dir = root / "labs"
        if not labs_dir.is_dir():
            continue
        for lab_dir in sorted(labs_dir.iterdir()):
            if lab_dir.is_dir() and (lab_dir / "lab.yaml").is_file() and lab_dir.name not in found:
                found[lab_dir.name] = Lab(dir=lab_dir, root=root, origin=origin)
    return [found[key] for key in sorted(found)]


def find_lab(lab_id: str) -> Lab:
    """The lab with this id, or LabNotFound with a did-you-mean suggestion."""
    labs = {lab.id: lab for lab in all_labs()}
    if lab_id in labs:
        return labs[lab_id]
    close = difflib.get_close_matches(lab_id, labs, n=3, cutoff=0.5)
    fix = f"did you mean {' or '.join(repr(c) for c in close)}?" if close else "run `labs list` to see the labs"
    raise LabNotFound(f"no lab named {lab_id!r}", where="the lab catalog", fix=fix)
