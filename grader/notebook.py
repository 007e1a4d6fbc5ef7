"""Reading a submission notebook on the grading side: its code cells, with clear errors when it is broken.

The grading path reads the JSON directly: importing nbformat costs about a second (its schema
machinery), and grading only needs the code cells. Old (v3) notebooks are upgraded with nbformat,
imported only then.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from grader.errors import NotebookError

SKIP_TAG = "grader:skip"


@dataclass(frozen=True)
class CodeCell:
    index: int  # position among all cells, 1-based, as Jupyter users count them
    source: str
    tags: tuple[str, ...] = field(default_factory=tuple)


def _source_text(source: object, where: str) -> str:
    if isinstance(source, str):
        return source
    if isinstance(source, list) and all(isinstance(line, str) for line in source):
        return "".join(source)
    raise NotebookError("a cell's 'source' is neither text nor a list of lines", where=where,
                        fix="open and re-save the notebook in Jupyter, or restore it with `labs reset`")


def read_notebook(path: Path) -> dict:
    """The notebook as a v4 dict. Raises NotebookError (what, where, fix) for anything unreadable."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise NotebookError(f"no notebook at {path}", where=str(path),
                            fix="check the path, or run `labs start <lab>` to create your copy") from None
    except IsADirectoryError:
        raise NotebookError(f"{path} is a folder, not a notebook", where=str(path), fix="pass the .ipynb file") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise NotebookError(f"the notebook is not UTF-8 text (byte {exc.start} is {raw[exc.start]:#04x})",
                            where=str(path), fix="save the notebook from Jupyter (it writes UTF-8), or restore it with `labs reset`") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise NotebookError(f"the notebook is not valid JSON: {exc.msg}", where=f"{path}, line {exc.lineno}, column {exc.colno}",
                            fix="undo the last manual edit of the .ipynb file, or restore it with `labs reset` (a backup is kept)") from None
    if not isinstance(data, dict) or "cells" not in data and "worksheets" not in data:
        raise NotebookError("the file is JSON but not a Jupyter notebook (no 'cells')", where=str(path),
                            fix="pass the .ipynb notebook of the lab")
    major = data.get("nbformat")
    if major != 4:
        data = _upgrade(data, path)
    if not isinstance(data.get("cells"), list):
        raise NotebookError("the notebook's 'cells' is not a list", where=str(path), fix="re-save the notebook in Jupyter")
    return data


def _upgrade(data: dict, path: Path) -> dict:
    try:
        import nbformat

        notebook = nbformat.reads(json.dumps(data), as_version=4)
    except Exception as exc:
        raise NotebookError(f"the notebook has format version {data.get('nbformat')!r}, which cannot be upgraded to 4 ({exc})",
                            where=str(path), fix="open it in a current Jupyter and save it (File > Save Notebook)") from None
    return json.loads(nbformat.writes(notebook))


def code_cells(notebook: dict, path: Path | str = "notebook") -> list[CodeCell]:
    cells = []
    for position, cell in enumerate(notebook["cells"], start=1):
        where = f"{path}, cell {position}"
        if not isinstance(cell, dict):
            raise NotebookError("a cell is not a JSON object", where=where, fix="re-save the notebook in Jupyter")
        if cell.get("cell_type") != "code":
            continue
        tags = (cell.get("metadata") or {}).get("tags") or []
        cells.append(CodeCell(index=position, source=_source_text(cell.get("source", ""), where),
                              tags=tuple(str(tag) for tag in tags if isinstance(tag, str))))
    return cells


def graded_cells(path: Path) -> list[CodeCell]:
    """The code cells the grader runs: all of them except those tagged `grader:skip`."""
    notebook = read_notebook(path)
    cells = [cell for cell in code_cells(notebook, path) if SKIP_TAG not in cell.tags]
    if not any(cell.source.strip() for cell in cells):
        raise NotebookError("the notebook has no code cells to grade", where=str(path),
                            fix="make sure you are grading the lab's notebook and that your code is in code cells")
    return cells
