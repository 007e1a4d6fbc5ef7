"""`labs run`: execute the student's notebook top to bottom in a real Jupyter kernel, like "Run All".

The notebook runs in a fresh `python3` kernel (ipykernel) whose working directory is the lab's
folder, so public files import as they do in JupyterLab. Execution stops at the first cell that
raises, times out or kills the kernel, as "Run All" does; `RunResult.failure` points at that cell.
(The grader is different on purpose: it keeps going after a failing cell, see docs/check-api.md.)

Outputs are saved back so the student sees them in JupyterLab, and the student's sources are never
touched: the file is re-read just before saving, the save is refused if it changed during the run,
and the outputs are copied into that fresh copy cell by cell. Trade-offs, plainly:

- The check and the rename are two steps; a save landing in the few milliseconds between them is
  overwritten by our copy of the same sources plus outputs. Edits made during the rest of the run
  (seconds to minutes) are always detected.
- A notebook open in JupyterLab shows "file changed on disk" after a saved run; choosing "Revert"
  shows the outputs. `--no-save` leaves the file alone.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from grader.atomic import atomic_write_text
from grader.errors import GaplabsError
from grader.workspace import read_notebook

if TYPE_CHECKING:
    import nbformat  # the real import waits until a notebook runs: it takes a second, `labs --help` needs none of it

DEFAULT_CELL_TIMEOUT_S = 300  # a training cell on CPU can take minutes; a hung cell should not take forever
KERNEL_NAME = "python3"
TRACEBACK_HEAD_LINES = 6  # "Cell In[n], line k" and the student's line that raised
TRACEBACK_TAIL_LINES = 14  # the innermost frames and the exception itself

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


@dataclass(frozen=True)
class CellFailure:
    """The cell where the run stopped. `index` is the 0-based position among all cells."""

    index: int
    first_line: str
    kind: str  # "error", "timeout" or "kernel died"
    error_name: str
    error_value: str
    traceback: str  # ANSI colours removed, middle trimmed

    def headline(self) -> str:
        where = f"cell {self.index + 1} (starts with: {self.first_line!r})"
        if self.kind == "timeout":
            return f"{where} ran past the time limit"
        if self.kind == "kernel died":
            return f"{where} killed the kernel (out of memory, a crash in native code, or exit())"
        return f"{where} raised {self.error_name}: {self.error_value}"


@dataclass
class RunResult:
    notebook: Path
    code_cells: int
    cells_run: int = 0
    failure: CellFailure | None = None
    saved: bool = False
    not_saved_reason: str | None = None
    duration_s: float = 0.0
    executed: list[int] = field(default_factory=list)  # indices of cells that ran (outputs to save)

    @property
    def ok(self) -> bool:
        return self.failure is None


def strip_ansi(text: str) -> str:
    return _ANSI.sub("", text)


def trim_traceback(lines: list[str], head: int = TRACEBACK_HEAD_LINES, tail: int = TRACEBACK_TAIL_LINES) -> str:
    """Join IPython's traceback lines without colours, keeping the start and the end of long ones."""
    text = "\n".join(strip_ansi(line) for line in lines)
    rows = [row for row in text.splitlines() if not set(row.strip()) <= {"-"}]  # drop the ---- rule
    if len(rows) <= head + tail + 1:
        return "\n".join(rows)
    hidden = len(rows) - head - tail
    return "\n".join([*rows[:head], f"    ... {hidden} lines not shown ...", *rows[-tail:]])


def first_line(source: str) -> str:
    lines = [line for line in source.strip().splitlines() if line.strip()]
    text = lines[0].strip() if lines else ""
    return text if len(text) <= 72 else text[:69] + "..."


def _failure_from_outputs(index: int, cell: nbformat.NotebookNode) -> CellFailure:
    error = next((out for out in cell.get("outputs", []) if out.get("output_type") == "error"), None)
    if error is None:  # the kernel replied "error" without an error output (rare)
        return CellFailure(index, first_line(cell.source), "error", "Error", "(no traceback from the kernel)", "")
    return CellFailure(
        index,
        first_line(cell.source),
        "error",
        error.get("ename", "Error"),
        strip_ansi(error.get("evalue", "")),
        trim_traceback(error.get("traceback", [])),
    )


def _new_client(nb: nbformat.NotebookNode, folder: Path, cell_timeout_s: float, kernel_name: str):
    from nbclient import NotebookClient  # imported here: it pulls in zmq, which `labs list` does not need

    return NotebookClient(
        nb,
        timeout=cell_timeout_s,
        kernel_name=kernel_name,
        resources={"metadata": {"path": str(folder)}},  # the kernel's working directory
        record_timing=False,  # no timestamps in cell metadata: keeps the student's diffs clean
        allow_errors=False,
        # ipykernel 7 warns on every start that loopback TCP is unencrypted (JupyterLab's default
        # too); students cannot act on it. Kernel errors still show.
        extra_arguments=["--IPKernelApp.log_level=ERROR"],
    )


def run_notebook(
    path: Path,
    *,
    cell_timeout_s: float = DEFAULT_CELL_TIMEOUT_S,
    save: bool = True,
    kernel_name: str = KERNEL_NAME,
    on_cell_start: Callable[[int, int, int, str], None] | None = None,
    on_cell_done: Callable[[int, int], None] | None = None,
) -> RunResult:
    """Run every non-empty code cell of `path` in order; stop at the first failure; save outputs.

    `on_cell_start(position, total, index, first_line)` and `on_cell_done(position, total)` report
    progress (`position` counts code cells from 0, `index` is the cell's place in the notebook).
    Raises GaplabsError when the kernel cannot start; cell failures are in the result instead.
    """
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    path = Path(path)
    original = path.read_bytes() if path.exists() else None
    nb = read_notebook(path)
    runnable = [i for i, cell in enumerate(nb.cells) if cell.cell_type == "code" and cell.source.strip()]
    result = RunResult(notebook=path, code_cells=len(runnable))
    client = _new_client(nb, path.parent, cell_timeout_s, kernel_name)
    started = time.perf_counter()
    try:
        with _started_kernel(client, kernel_name):
            for position, index in enumerate(runnable):
                cell = nb.cells[index]
                if on_cell_start:
                    on_cell_start(position, len(runnable), index, first_line(cell.source))
                result.executed.append(index)
                try:
                    client.execute_cell(cell, index)
                except CellExecutionError:
                    result.failure = _failure_from_outputs(index, cell)
                    break
                except CellTimeoutError:
                    client.shutdown_kernel = "immediate"  # it is still busy: a polite shutdown would wait on it
                    result.failure = CellFailure(
                        index, first_line(cell.source), "timeout", "Timeout",
                        f"still running after {cell_timeout_s:g} s", "",
                    )
                    break
                except DeadKernelError:
                    result.failure = CellFailure(index, first_line(cell.source), "kernel died", "DeadKernel", "the kernel died", "")
                    break
                result.cells_run += 1
                if on_cell_done:
                    on_cell_done(position, len(runnable))
    finally:
        result.duration_s = time.perf_counter() - started
    if save:
        _save_outputs(path, original, nb, result)
    return result


@contextmanager
def _started_kernel(client, kernel_name: str) -> Iterator[None]:
    """`client.setup_kernel()` with start-up failures turned into errors that say what to do."""
    from jupyter_client.kernelspec import NoSuchKernel

    with ExitStack() as stack:
        try:
            stack.enter_context(client.setup_kernel())
        except NoSuchKernel:
            raise GaplabsError(
                f"no Jupyter kernel named {kernel_name!r} is installed",
                where="jupyter kernelspec list",
                fix="install ipykernel in this environment: `pip install ipykernel`",
            ) from None
        except RuntimeError as exc:  # "Kernel didn't respond in 60 seconds"
            raise GaplabsError(
                f"the {kernel_name!r} kernel did not start: {exc}",
                fix="try `python -m ipykernel --version`; a broken install or a full disk are the usual causes",
            ) from None
        yield


def _save_outputs(path: Path, original: bytes | None, nb: nbformat.NotebookNode, result: RunResult) -> None:
    """Copy the outputs of the cells that ran into a fresh read of the file, if nobody changed it."""
    import nbformat

    try:
        current = path.read_bytes()
    except FileNotFoundError:
        current = None
    if current != original:
        result.not_saved_reason = "the notebook changed on disk while it ran (saved from JupyterLab?); outputs were not saved so your edits are safe"
        return
    fresh = nbformat.reads(current.decode("utf-8"), as_version=4)
    for index in result.executed:
        fresh.cells[index].outputs = nb.cells[index].get("outputs", [])
        fresh.cells[index].execution_count = nb.cells[index].get("execution_count")
    atomic_write_text(path, nbformat.writes(fresh) + "\n")
    result.saved = True


# -- the `labs run` display ------------------------------------------------------------------


def run_with_progress(path: Path, console, *, cell_timeout_s: float, save: bool) -> RunResult:
    """`run_notebook` with a rich progress bar: one step per code cell, the running cell named."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("starting the kernel", total=None)

        def started(position: int, total: int, index: int, line: str) -> None:
            progress.update(task, total=total, completed=position, description=f"cell {index + 1}: {line[:40]}")

        def done(position: int, total: int) -> None:
            progress.update(task, completed=position + 1)

        result = run_notebook(path, cell_timeout_s=cell_timeout_s, save=save, on_cell_start=started, on_cell_done=done)
        progress.update(task, description="done" if result.ok else "stopped")
    return result


def print_run_result(result: RunResult, console) -> None:
    """Say what happened: the failing cell with its trimmed traceback, and whether outputs were saved."""
    from rich.markup import escape
    from rich.panel import Panel

    if result.failure is None:
        console.print(f"[green]All {result.code_cells} code cells ran[/green] in {result.duration_s:.1f} s.")
    else:
        failure = result.failure
        console.print(f"[red]Stopped at {escape(failure.headline())}[/red]")
        if failure.traceback:
            console.print(Panel(escape(failure.traceback), title=f"cell {failure.index + 1}", border_style="red", expand=False))
        if failure.kind == "timeout":
            console.print("Raise the limit with `--timeout SECONDS`, or make the cell faster (smaller data, fewer steps).")
        console.print(f"Fix that cell, save, and run again. {result.cells_run} of {result.code_cells} code cells ran.")
    if result.saved:
        console.print(f"Outputs saved to {escape(str(result.notebook))}.")
    elif result.not_saved_reason:
        console.print(f"[yellow]Outputs not saved: {escape(result.not_saved_reason)}[/yellow]")
