"""`labs watch`: grade the notebook again every time it is saved, for a tight edit-grade loop.

It polls the file's (mtime, size) instead of using OS file events: no extra dependency, the same
behaviour on Linux, macOS, Windows and network or container mounts where inotify is silent. The
cost is a stat() every `poll_s` (microseconds) and up to `poll_s` of latency, small next to a grade.

Debouncing: JupyterLab saves by writing a temporary file and renaming it, and autosave can fire
again a moment later, so a change is graded only once the file has stayed the same for
`debounce_s`. A missing file (between the two steps of a save, or deleted) is waited out, not
graded.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

DEFAULT_POLL_S = 0.5
DEFAULT_DEBOUNCE_S = 0.75  # longer than one save, shorter than a student's patience

Signature = tuple[int, int] | None  # (mtime_ns, size); None while the file does not exist


def file_signature(path: Path) -> Signature:
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return None
    return (stat.st_mtime_ns, stat.st_size)


def watch_file(
    path: Path,
    on_change: Callable[[], None],
    *,
    should_stop: Callable[[], bool],
    poll_s: float = DEFAULT_POLL_S,
    debounce_s: float = DEFAULT_DEBOUNCE_S,
    run_first: bool = True,
    on_error: Callable[[Exception], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> int:
    """Call `on_change()` after each settled change of `path` until `should_stop()`; return the call count.

    `run_first` calls it once at the start (the student wants to see where they stand). An exception
    from `on_change` goes to `on_error` and the watch goes on; without `on_error` it propagates.
    `sleep` and `clock` are parameters so tests can drive the loop without waiting.
    """
    calls = 0

    def call() -> None:
        nonlocal calls
        calls += 1
        try:
            on_change()
        except Exception as exc:  # one failed grade must not end the watch
            if on_error is None:
                raise
            on_error(exc)

    # `handled` is the version last graded, as seen *before* grading: a save made while a grade
    # runs (grades take seconds) is a new change and gets its own grade.
    handled = file_signature(path)
    if run_first and handled is not None:
        call()
    pending: Signature = handled
    pending_since = clock()
    while not should_stop():
        sleep(poll_s)
        current = file_signature(path)
        if current != pending:  # still changing: restart the quiet period
            pending, pending_since = current, clock()
            continue
        if current is not None and current != handled and clock() - pending_since >= debounce_s:
            handled = current
            call()
    return calls


def watch_and_grade(lab, notebook: Path, workspace: Path, *, device: str | None, console, should_stop=None, **timing) -> int:
    """Grade `notebook` now and after every save, print each report, record each grade in the store.
    Returns the number of grades.

    The engine and the report display are imported here, not at module import, so `labs list`
    stays fast and this module imports before the engine exists.
    """
    from rich.markup import escape

    from grader.display import print_report
    from grader.engine import grade
    from grader.store import ProgressStore
    from grader.workspace import submission_sha256

    store = ProgressStore(workspace)

    def grade_once() -> None:
        console.rule(f"[bold]{lab.id}[/bold] · {time.strftime('%H:%M:%S')}")
        digest = submission_sha256(notebook)
        report = grade(lab, notebook=notebook, device=device)
        print_report(report, console)
        store.record_grade(report.to_dict(), digest)
        console.print(f"[dim]Watching {notebook.name}: save to grade again, Ctrl-C to stop.[/dim]")

    def report_error(exc: Exception) -> None:
        console.print(f"[red]Grading failed:[/red] {escape(str(exc))}")
        console.print("[dim]Fix it and save again; still watching.[/dim]")

    # The first grade runs unprotected: a mistake that no save can fix (a device the lab does not
    # support, a broken lab) stops the watch with its error instead of repeating on every save.
    grade_once()
    stop = should_stop or (lambda: False)
    return 1 + watch_file(notebook, grade_once, should_stop=stop, run_first=False, on_error=report_error, **timing)
