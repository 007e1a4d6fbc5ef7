"""Instructor side of a lab: solution markers -> starter (`labs release`), mutant headers, `labs new`.

The solution notebook is the one source of truth. Each `### BEGIN SOLUTION` ... `### END SOLUTION`
region in a code cell becomes one `raise NotImplementedError("...")` line in the starter, at the
indentation of the BEGIN line. Notebooks are read and written with plain `json` (importing
nbformat costs about a second) in exactly the layout nbformat writes, so the same solution always
gives a byte-identical starter and opening and saving it in Jupyter changes little.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from grader.atomic import atomic_write_text
from grader.errors import GaplabsError, LabFormatError, NotebookError
from grader.labspec import LAB_ID
from grader.registry import Lab

BEGIN_MARKER = re.compile(r"^(?P<indent>[ \t]*)### BEGIN SOLUTION(?:[ \t]+(?P<text>.*?))?[ \t]*$")
END_MARKER = re.compile(r"^[ \t]*### END SOLUTION[ \t]*$")
# A line that mentions a marker but does not match one exactly ("## BEGIN SOLUTION", "### BEGIN
# SOLUTIONS") would be copied into the starter with the answer below it; refuse it instead.
NEAR_MISS = re.compile(r"^[ \t]*#+[ \t]*(BEGIN|END)[ _]?SOLUTION", re.IGNORECASE)
DEFAULT_STUB_TEXT = "implement this part"


# ---------------------------------------------------------------------------------------------
# Reading and writing notebooks


def read_notebook(path: Path) -> dict:
    """Parse a .ipynb as JSON and check the little the release step relies on (v4, a cell list)."""
    try:
        notebook = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise NotebookError(
            "the notebook does not exist", where=str(path), fix="create it, or check the lab id"
        ) from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise NotebookError(
            f"not a Jupyter notebook (not JSON: {exc})", where=str(path), fix="open and re-save it in Jupyter"
        ) from None
    if not isinstance(notebook, dict) or not isinstance(notebook.get("cells"), list):
        raise NotebookError(
            "not a Jupyter notebook (no 'cells' list)", where=str(path), fix="open and re-save it in Jupyter"
        )
    if notebook.get("nbformat") != 4:
        raise NotebookError(
            f"notebook format {notebook.get('nbformat')!r} is not supported, expected 4",
            where=str(path),
            fix="save it with a current Jupyter (nbformat 4)",
        )
    return notebook


def cell_source(cell: dict) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else str(source)


def _split_lines(text: str) -> list[str]:
    return text.splitlines(keepends=True)


def render_notebook(notebook: dict) -> str:
    """The notebook as nbformat writes it (sorted keys, indent 1, sources as line lists).

    Outputs are written as they are: starters have none, which is all the release step writes.
    """
    cells = [{**cell, "source": _split_lines(cell_source(cell))} for cell in notebook["cells"]]
    text = json.dumps(
        {**notebook, "cells": cells}, sort_keys=True, indent=1, ensure_ascii=False, separators=(",", ": ")
    )
    return text + "\n"


# ---------------------------------------------------------------------------------------------
# Solution regions -> starter


@dataclass(frozen=True)
class Region:
    """One marked solution region: where it is, and what the student is told to implement."""

    cell_number: int  # 1-based, counting every cell of the notebook
    begin_line: int  # 1-based, inside the cell
    end_line: int
    text: str


def _where(source_name: str, cell_number: int, cell: dict, line: int | None = None) -> str:
    cell_id = f" (id {cell['id']})" if cell.get("id") else ""
    at_line = f", line {line}" if line is not None else ""
    return f"{source_name}, cell {cell_number}{cell_id}{at_line}"


def stub_line(indent: str, text: str) -> str:
    """`raise NotImplementedError("text")` at `indent`, with the text quoted safely for Python."""
    quoted = '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return f"{indent}raise NotImplementedError({quoted})"


def strip_solution_regions(source: str, *, source_name: str, cell_number: int, cell: dict) -> tuple[str, list[Region]]:
    """Replace each marked region of one code cell by a stub; LabFormatError on malformed markers."""
    out: list[str] = []
    regions: list[Region] = []
    open_at: tuple[int, str, str] | None = None  # (line, indent, text) of the BEGIN being read
    for number, line in enumerate(_split_lines(source), start=1):
        body = line.rstrip("\r\n")
        newline = line[len(body) :]
        begin, end = BEGIN_MARKER.match(body), END_MARKER.match(body)
        if begin:
            if open_at is not None:
                raise LabFormatError(
                    f"nested '### BEGIN SOLUTION': the region opened at line {open_at[0]} is not closed yet",
                    where=_where(source_name, cell_number, cell, number),
                    fix="close the first region with '### END SOLUTION' before opening another",
                )
            open_at = (number, begin.group("indent"), (begin.group("text") or "").strip() or DEFAULT_STUB_TEXT)
        elif end:
            if open_at is None:
                raise LabFormatError(
                    "'### END SOLUTION' without a '### BEGIN SOLUTION' before it in this cell",
                    where=_where(source_name, cell_number, cell, number),
                    fix="add the BEGIN marker above it (a region must start and end in the same cell) or remove it",
                )
            begin_line, indent, text = open_at
            out.append(stub_line(indent, text) + (newline or ""))
            regions.append(Region(cell_number, begin_line, number, text))
            open_at = None
        elif open_at is None and NEAR_MISS.search(body):
            raise LabFormatError(
                f"this line looks like a solution marker but is not one: {body.strip()!r}",
                where=_where(source_name, cell_number, cell, number),
                fix="write exactly '### BEGIN SOLUTION <what to implement>' or '### END SOLUTION' on a line of its own",
            )
        elif open_at is None:
            out.append(line)
    if open_at is not None:
        raise LabFormatError(
            f"'### BEGIN SOLUTION' at line {open_at[0]} is never closed",
            where=_where(source_name, cell_number, cell, open_at[0]),
            fix="add '### END SOLUTION' after the solution code, in the same cell",
        )
    return "".join(out), regions


def build_starter(solution: dict, *, source_name: str) -> tuple[dict, list[Region]]:
    """The starter notebook for a parsed solution notebook, and the regions that were replaced.

    Code cells lose their outputs and execution counts (they would show the answer) and keep their
    metadata and tags; markdown and raw cells are copied as they are. A solution without any
    region is an error: its starter would hand out the answer.
    """
    cells: list[dict] = []
    regions: list[Region] = []
    for number, cell in enumerate(solution["cells"], start=1):
        source = cell_source(cell)
        if cell.get("cell_type") != "code":
            for line_number, line in enumerate(_split_lines(source), start=1):
                if NEAR_MISS.search(line):
                    raise LabFormatError(
                        "a solution marker in a markdown cell: only code cells can hold solution regions",
                        where=_where(source_name, number, cell, line_number),
                        fix="move the marked code into a code cell; write the prose students see without markers",
                    )
            cells.append(cell)
            continue
        stripped, cell_regions = strip_solution_regions(source, source_name=source_name, cell_number=number, cell=cell)
        regions.extend(cell_regions)
        cells.append({**cell, "source": stripped, "outputs": [], "execution_count": None})
    if not regions:
        raise LabFormatError(
            "the solution notebook has no '### BEGIN SOLUTION' / '### END SOLUTION' region",
            where=source_name,
            fix="mark the code students must write; without a region the starter would contain the answer",
        )
    return {**solution, "cells": cells}, regions


def starter_text(lab: Lab) -> tuple[str, list[Region]]:
    """The starter.ipynb text `labs release` would write for `lab`."""
    solution = read_notebook(lab.solution_path)
    starter, regions = build_starter(solution, source_name=_display(lab.solution_path, lab.root))
    return render_notebook(starter), regions


@dataclass(frozen=True)
class ReleaseResult:
    lab_id: str
    starter_path: Path
    regions: list[Region]
    changed: bool  # False when the committed starter was already up to date


def release(lab: Lab, *, write: bool = True) -> ReleaseResult:
    """Regenerate `labs/<id>/starter.ipynb` from the solution; with write=False only compare."""
    text, regions = starter_text(lab)
    current = lab.starter_path.read_bytes() if lab.starter_path.is_file() else None
    changed = current != text.encode("utf-8")
    if write and changed:
        atomic_write_text(lab.starter_path, text)
    return ReleaseResult(lab.id, lab.starter_path, regions, changed)


def starter_sync_problem(lab: Lab) -> str | None:
    """None when the committed starter is what `labs release` would write, else why it is not."""
    if not lab.solution_path.is_file():
        return f"no solution notebook at {_display(lab.solution_path, lab.root)}"
    result = release(lab, write=False)
    if not lab.starter_path.is_file():
        return f"no starter at {_display(lab.starter_path, lab.root)}; run `labs release {lab.id}`"
    if result.changed:
        return f"{_display(lab.starter_path, lab.root)} differs from what the solution generates; run `labs release {lab.id}`"
    return None


def _display(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


# ---------------------------------------------------------------------------------------------
# Mutants

CATCHES_LINE = re.compile(r"^#\s*catches\s*:(?P<ids>.*)$", re.IGNORECASE)
WHY_LINE = re.compile(r"^#\s*why\s*:(?P<why>.*)$", re.IGNORECASE)


@dataclass(frozen=True)
class Mutant:
    """A known-wrong override of the solution and the checks that must catch it."""

    path: Path
    catches: tuple[str, ...]
    why: str  # empty when the header has no '# why:' line
    source: str

    @property
    def name(self) -> str:
        return self.path.stem


def parse_mutant(path: Path, *, check_ids: Collection[str] | None = None) -> Mutant:
    """Read a mutant file and its header (the comment block at the top of the file).

    `# catches: id1, id2` is required and every id must be a check of lab.yaml (when `check_ids`
    is given); `# why: ...` says which mistake it models. The body must be valid Python.
    """
    source = path.read_text(encoding="utf-8")
    catches: list[str] = []
    why_parts: list[str] = []
    for line in source.splitlines():
        stripped = line.strip()
        if not stripped:
            continue
        if not stripped.startswith("#"):
            break  # the header ends at the first line of code
        if match := CATCHES_LINE.match(stripped):
            catches += [part.strip() for part in match.group("ids").split(",") if part.strip()]
        elif match := WHY_LINE.match(stripped):
            why_parts.append(match.group("why").strip())
    if not catches:
        raise LabFormatError(
            "the mutant does not say which checks catch it",
            where=str(path),
            fix="start the file with '# catches: <check id>, ...' and '# why: <the mistake it models>'",
        )
    if check_ids is not None:
        unknown = [check for check in catches if check not in check_ids]
        if unknown:
            raise LabFormatError(
                f"'# catches:' names {', '.join(map(repr, unknown))}, which lab.yaml does not list",
                where=f"{path}, header",
                fix=f"use check ids from lab.yaml: {', '.join(sorted(check_ids))}",
            )
    try:
        ast.parse(source, filename=str(path))
    except SyntaxError as exc:
        raise LabFormatError(
            f"the mutant is not valid Python: {exc.msg}", where=f"{path}, line {exc.lineno}", fix="fix the syntax"
        ) from None
    return Mutant(path=path, catches=tuple(dict.fromkeys(catches)), why=" ".join(why_parts), source=source)


def mutant_paths(lab: Lab) -> list[Path]:
    if not lab.mutants_dir.is_dir():
        return []
    return sorted(p for p in lab.mutants_dir.glob("*.py") if not p.name.startswith("_"))


def load_mutants(lab: Lab) -> list[Mutant]:
    check_ids = {check.id for check in lab.spec.checks}
    return [parse_mutant(path, check_ids=check_ids) for path in mutant_paths(lab)]


# ---------------------------------------------------------------------------------------------
# `labs new`: a small lab that validates as created


@dataclass(frozen=True)
class Scaffold:
    lab_dir: Path
    files: list[Path]


def new_lab(lab_id: str, *, root: Path, title: str | None = None) -> Scaffold:
    """Create labs/<id>/ and solutions/<id>/ under the pack root `root`; never overwrites a lab."""
    if not LAB_ID.match(lab_id):
        raise GaplabsError(
            f"{lab_id!r} is not a lab id",
            where="labs new",
            fix="use lowercase words joined by hyphens, e.g. 'kv-cache-math'",
        )
    lab_dir, solution_dir = root / "labs" / lab_id, root / "solutions" / lab_id
    for existing in (lab_dir, solution_dir):
        if existing.exists():
            raise GaplabsError(
                f"{existing} already exists; `labs new` never overwrites a lab",
                where=str(existing),
                fix="pick another id, or remove the folder first if you really mean to start over",
            )
    title = title or lab_id.replace("-", " ").capitalize()
    files = {
        lab_dir / "lab.yaml": _scaffold_lab_yaml(lab_id, title),
        lab_dir / "checks" / "test_softmax.py": SCAFFOLD_CHECK_FILE,
        lab_dir / "mutants" / "no_max_subtraction.py": SCAFFOLD_MUTANT_FILE,
        solution_dir / "solution.ipynb": render_notebook(_scaffold_solution_notebook(title)),
    }
    for path, text in files.items():
        atomic_write_text(path, text)
    lab = Lab(dir=lab_dir, root=root, origin=f"path:{root}")
    release(lab)
    return Scaffold(lab_dir=lab_dir, files=[*files, lab.starter_path])


# The scaffold's files. The example is deliberately tiny (a stable softmax) so that the scaffold
# grades in seconds and `labs validate <id>` passes on it as created; replace it with the real lab.

_SCAFFOLD_LAB_YAML = """\
# lab.yaml: the manifest of this lab. Schema: docs/check-api.md. `labs validate {id}` checks it,
# and proves the checks, the starter, the solution and the mutants agree with each other.
id: {id}                      # must equal the folder name
title: {title}
summary: Implement a numerically stable softmax and see why subtracting the maximum matters.
version: 0.1.0                # bump it when a change could alter a student's grade
gaps: []                      # catalog gap ids this lab grades, e.g. ["015"] (three digits)
topics: [numerics]            # free words for `labs list --topic`
difficulty: intro             # intro | intermediate | advanced
minutes: 15                   # an honest estimate for a student
devices: [cpu]                # add cuda when some checks are worth running on a GPU
preload: [torch]              # imported once before submission processes fork: faster grading
limits:
  wall_time_s: 60             # the whole grading run
  call_timeout_s: 10          # one call into the student's code
  memory_mb: 4096             # the student's process
  grade_budget_s: 30          # `labs validate` fails when the solution grades slower than this
hints:                        # `labs hint` shows them one at a time: from a nudge to the answer
  - softmax(x) = exp(x) / exp(x).sum() along `dim`; keep the dimension so the division broadcasts.
  - exp(1000.0) is inf in float32. softmax(x) equals softmax(x - c) for any c constant along `dim`.
  - Subtract x.amax(dim=dim, keepdim=True) before exp; the largest exponent is then exp(0) = 1.
checks:                       # one entry per function test_<id> in checks/*.py
  - id: softmax_matches_torch
    title: softmax matches torch.softmax on ordinary inputs
    points: 2
  - id: softmax_is_stable
    title: softmax stays finite and exact on inputs around 1000
    points: 1
"""


def _scaffold_lab_yaml(lab_id: str, title: str) -> str:
    return _SCAFFOLD_LAB_YAML.format(id=lab_id, title=json.dumps(title))


SCAFFOLD_CHECK_FILE = '''\
"""Hidden checks of this lab: pytest functions that run in the trusted grading process.

The student's code runs in a separate process; a check reaches it only through the `submission`
fixture (docs/check-api.md), and tensors come back as plain data. Each `test_<id>` needs a
lab.yaml entry `<id>` with its points. Every check starts with torch, numpy and random seeded to 0.
Messages say what was expected, what came, and the likely cause: students never see this source.
"""

import torch

from grader.testing import assert_tensor_close, expect_tensor


def test_softmax_matches_torch(submission):
    # float64 keeps the comparison about the formula, not about rounding.
    x = torch.randn(4, 7, dtype=torch.float64)
    for dim in (-1, 0):
        got = submission.softmax(x, dim=dim)
        expect_tensor(got, shape=(4, 7), dtype=torch.float64, what=f"softmax(x, dim={dim})")
        assert_tensor_close(
            got,
            torch.softmax(x, dim=dim),
            what=f"softmax(x, dim={dim})",
            hint="normalise along `dim` with keepdim=True so that the sum broadcasts",
        )


def test_softmax_is_stable(submission):
    x = torch.tensor([[1000.0, 1001.0, 1002.0], [-1000.0, 0.0, 1000.0]])
    got = submission.softmax(x, dim=-1)
    assert bool(torch.isfinite(got).all()), (
        f"expected finite probabilities for inputs around 1000, got {got.tolist()}; "
        "likely cause: exp(1000) overflows to inf and inf / inf is nan: subtract the maximum first"
    )
    assert_tensor_close(got, torch.softmax(x, dim=-1), what="softmax of inputs around 1000")
'''

SCAFFOLD_MUTANT_FILE = """\
# catches: softmax_is_stable
# why: the textbook exp(x) / sum(exp(x)) is right on small inputs but exp(1000) overflows to inf
#
# A mutant is a realistic mistake, written as code that overrides the solution's definitions: the
# grader runs the solution notebook with this file as an extra last cell. `labs validate` proves
# that every check named in 'catches' loses its points on it. It never reaches students.
import torch


def softmax(x, dim=-1):
    e = torch.exp(x)
    return e / e.sum(dim=dim, keepdim=True)
"""


def _scaffold_solution_notebook(title: str) -> dict:
    """The reference solution; `labs release` turns its marked region into the starter's stub."""

    def markdown(cell_id: str, text: str) -> dict:
        return {"cell_type": "markdown", "id": cell_id, "metadata": {}, "source": text}

    def code(cell_id: str, text: str) -> dict:
        return {
            "cell_type": "code",
            "execution_count": None,
            "id": cell_id,
            "metadata": {},
            "outputs": [],
            "source": text,
        }

    cells = [
        markdown(
            "task",
            f"# {title}\n\n"
            "Implement `softmax(x, dim=-1)`: probabilities along `dim` that are non-negative and sum to 1.\n"
            "It must stay exact for inputs around 1000, where `exp` overflows in float32.\n\n"
            "Keep your definitions in their own cells: the grader runs the notebook top to bottom and then "
            "calls `softmax` with its own inputs.",
        ),
        code("imports", "import torch"),
        code(
            "softmax",
            "def softmax(x: torch.Tensor, dim: int = -1) -> torch.Tensor:\n"
            '    """Probabilities along `dim`: non-negative, summing to 1, finite even for huge inputs."""\n'
            "    ### BEGIN SOLUTION subtract the maximum along `dim`, exponentiate, divide by the sum\n"
            "    # (instructor) everything from BEGIN to END becomes one `raise NotImplementedError` line\n"
            "    # in the starter, carrying the text after BEGIN SOLUTION as the message.\n"
            "    shifted = x - x.amax(dim=dim, keepdim=True)  # softmax(x) == softmax(x - c): largest exponent is 0\n"
            "    e = torch.exp(shifted)\n"
            "    return e / e.sum(dim=dim, keepdim=True)\n"
            "    ### END SOLUTION",
        ),
        markdown("try-it", "Try it: each row should be finite and sum to 1."),
        code("try-it-code", "x = torch.tensor([[1000.0, 1001.0, 1002.0]])\nprint(softmax(x), softmax(x).sum(dim=-1))"),
    ]
    return {
        "cells": cells,
        "metadata": {
            "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
            "language_info": {"name": "python"},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }
