"""The student commands of the `labs` CLI: list, gaps, start, run, status, hint, reset, watch, solution.

Each command parses its options and calls functions of grader.workspace, grader.store,
grader.runner or grader.watch; the behaviour lives there, this file only shows it. Mistakes are
raised as GaplabsError, which the main CLI prints without a traceback (exit code 2).
"""

from __future__ import annotations

import importlib.util
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from grader.catalog import GAPS, area_of
from grader.errors import GaplabsError, LabFormatError
from grader.registry import Lab, all_labs, find_lab
from grader.runner import DEFAULT_CELL_TIMEOUT_S
from grader.store import LabProgress, ProgressStore
from grader.watch import DEFAULT_DEBOUNCE_S, DEFAULT_POLL_S
from grader.workspace import WORKSPACE_ENV, notebook_path, prepare_lab, read_notebook, reset_lab, workspace_root


def _console():
    from rich.console import Console

    return Console()


def _complete_lab_id(incomplete: str) -> list[str]:
    """Shell completion for lab ids."""
    try:
        return [lab.id for lab in all_labs() if lab.id.startswith(incomplete)]
    except Exception:  # completion must never print a traceback into the shell
        return []


LabArgument = Annotated[str, typer.Argument(metavar="LAB", help="lab id (see `labs list`)", autocompletion=_complete_lab_id)]
WorkspaceOption = Annotated[
    Path | None,
    typer.Option("--workspace", "-w", help=f"workspace folder [default: ${WORKSPACE_ENV} or ~/gaplabs]", show_default=False),
]


# -- what the student has done: one row per lab ------------------------------------------------


def _status(lab: Lab, progress: LabProgress | None, workspace: Path) -> str:
    if progress is not None and progress.passed:
        return "passed"
    if (progress is not None and (progress.attempts or progress.hints_used)) or notebook_path(lab.id, workspace).exists():
        return "in progress"
    return "not started"


def _points(value: float) -> str:
    return f"{value:g}"


def _best_text(progress: LabProgress | None) -> str:
    if progress is None or progress.best is None:
        return "-"
    return f"{_points(progress.best.score)}/{_points(progress.best.max_score)}"


def lab_rows(labs: list[Lab], workspace: Path, console=None) -> list[dict]:
    """One dict per lab for `labs list` and `labs status`; a lab whose lab.yaml is broken is reported and skipped."""
    progress = ProgressStore(workspace).progress()
    rows = []
    for lab in labs:
        try:
            spec = lab.spec
        except LabFormatError as exc:  # one broken lab must not hide the others
            if console is not None:
                console.print(f"[yellow]skipping {lab.id}: {escape(exc.what)}[/yellow]")
            continue
        mine = progress.get(lab.id)
        best = mine.best if mine else None
        rows.append({
            "id": lab.id,
            "title": spec.title,
            "summary": spec.summary,
            "gaps": list(spec.gaps),
            "topics": list(spec.topics),
            "difficulty": spec.difficulty,
            "minutes": spec.minutes,
            "devices": list(spec.devices),
            "status": _status(lab, mine, workspace),
            "best_score": None if best is None else best.score,
            "max_score": None if best is None else best.max_score,
            "best": _best_text(mine),
            "attempts": mine.attempts if mine else 0,
            "hints_used": mine.hints_used if mine else 0,
            "hints": len(spec.hints),
            "best_graded_at": None if best is None else best.graded_at,
            "origin": lab.origin,
        })
    return rows


_STATUS_STYLE = {"passed": "green", "in progress": "yellow", "not started": "dim"}


def _normalise_gap(gap: str) -> str:
    text = gap.strip().zfill(3)
    if text not in GAPS:
        raise GaplabsError(f"{gap!r} is not a gap id of the catalog", where="--gap", fix="use a number from 1 to 100, e.g. --gap 092 (see `labs gaps`)")
    return text


def gap_coverage(labs: list[Lab]) -> dict[str, list[str]]:
    """Gap id -> ids of the labs covering it, for all 100 gaps (an empty list: not covered)."""
    coverage: dict[str, list[str]] = {gap: [] for gap in GAPS}
    for lab in labs:
        try:
            gaps = lab.spec.gaps
        except LabFormatError:
            continue
        for gap in gaps:
            coverage[gap].append(lab.id)
    return coverage


# -- commands -------------------------------------------------------------------------------


def list_command(
    topic: Annotated[str | None, typer.Option("--topic", help="only labs with this topic")] = None,
    gap: Annotated[str | None, typer.Option("--gap", help="only labs covering this gap id (e.g. 092)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
    gaps: Annotated[bool, typer.Option("--gaps", help="show which of the 100 gap ids the labs cover (= `labs gaps`)")] = False,
    workspace: WorkspaceOption = None,
) -> None:
    """List the labs with your status and best score; filter by topic or gap."""
    if gaps:
        gaps_command(missing=False, as_json=as_json)
        return
    console = _console()
    rows = lab_rows(all_labs(), workspace_root(workspace), console=None if as_json else console)
    if topic:
        rows = [row for row in rows if topic.lower() in (t.lower() for t in row["topics"])]
    if gap:
        wanted = _normalise_gap(gap)
        rows = [row for row in rows if wanted in row["gaps"]]
    if as_json:
        typer.echo(json.dumps(rows, indent=1))
        return
    if not rows:
        console.print("No labs match." if (topic or gap) else "No labs are installed (`labs fetch` installs a lab pack).")
        return
    from rich import box
    from rich.table import Table

    # id and title share a column so the table fits an 80-column terminal
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True, show_edge=False, leading=1)
    table.add_column("lab", overflow="fold", min_width=max(len(row["id"]) for row in rows))
    table.add_column("gaps", max_width=7)  # two ids a line; a lab covering many gaps grows downwards
    for name in ("level", "min", "devices", "status", "best"):
        table.add_column(name, no_wrap=True, justify="right" if name in ("min", "best") else "left")
    for row in rows:
        style = _STATUS_STYLE[row["status"]]
        table.add_row(f"[bold]{row['id']}[/bold]\n[dim]{escape(row['title'])}[/dim]", " ".join(row["gaps"]),
                      row["difficulty"], str(row["minutes"]), " ".join(row["devices"]),
                      f"[{style}]{row['status']}[/{style}]", row["best"])
    console.print(table)
    console.print("Start one with `labs start <id>`.")


def gaps_command(
    missing: Annotated[bool, typer.Option("--missing", help="only the gaps no lab covers yet")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
) -> None:
    """Which of the 100 gap ids of the catalog the labs cover, and by which labs."""
    coverage = gap_coverage(all_labs())
    covered = sum(1 for labs in coverage.values() if labs)
    if as_json:
        gaps = [{"id": gap, "name": GAPS[gap], "area": area_of(gap), "labs": labs} for gap, labs in coverage.items()
                if not (missing and labs)]
        typer.echo(json.dumps({"covered": covered, "total": len(GAPS), "gaps": gaps}, indent=1))
        return
    from rich.table import Table

    table = Table(title=f"{covered} of {len(GAPS)} gaps covered", title_justify="left")
    for name in ("gap", "name", "area", "labs"):
        table.add_column(name)
    for gap, labs in coverage.items():
        if missing and labs:
            continue
        table.add_row(gap, GAPS[gap], area_of(gap), ", ".join(labs) if labs else "[dim]not covered[/dim]")
    console = _console()
    console.print(table)
    console.print(f"{covered} of {len(GAPS)} gaps covered, {len(GAPS) - covered} not covered.")


def start_command(
    lab_id: LabArgument,
    workspace: WorkspaceOption = None,
    no_browser: Annotated[bool, typer.Option("--no-browser", help="start JupyterLab without opening a browser")] = False,
    no_jupyter: Annotated[bool, typer.Option("--no-jupyter", help="only prepare the files and print the path")] = False,
    port: Annotated[int, typer.Option("--port", help="JupyterLab port on 127.0.0.1 (0: a free one)", min=0, max=65535)] = 0,
) -> None:
    """Copy the lab into your workspace (your existing copy is kept) and open it in JupyterLab."""
    lab = find_lab(lab_id)
    root = workspace_root(workspace)
    resumed = notebook_path(lab.id, root).exists()
    notebook = prepare_lab(lab, root)
    console = _console()
    console.print(f"[bold]{escape(lab.spec.title)}[/bold] ({lab.spec.minutes} min, {lab.spec.difficulty})")
    console.print(f"{'Resuming your copy' if resumed else 'Created your copy'}: {escape(str(notebook))}")
    console.print(
        "Next:\n"
        f"  1. fill in the TODOs in {notebook.name} and save\n"
        f"  2. `labs run {lab.id}` runs it top to bottom; `labs grade {lab.id}` grades it "
        f"(`labs watch {lab.id}` on every save)\n"
        f"  3. stuck? `labs hint {lab.id}` ({len(lab.spec.hints)} hints, one at a time)"
    )
    if no_jupyter:
        return
    raise typer.Exit(serve_jupyter_lab(notebook, port=port, open_browser=not no_browser, console=console))


def run_command(
    lab_id: LabArgument,
    workspace: WorkspaceOption = None,
    timeout: Annotated[float, typer.Option("--timeout", help="seconds one cell may run", min=1)] = DEFAULT_CELL_TIMEOUT_S,
    no_save: Annotated[bool, typer.Option("--no-save", help="do not write the outputs into the notebook")] = False,
) -> None:
    """Run your notebook top to bottom in a fresh Jupyter kernel; stop at the first failing cell."""
    from grader.runner import print_run_result, run_with_progress

    notebook = _existing_notebook(lab_id, workspace)
    console = _console()
    result = run_with_progress(notebook, console, cell_timeout_s=timeout, save=not no_save)
    print_run_result(result, console)
    if not result.ok:
        raise typer.Exit(1)


def status_command(
    workspace: WorkspaceOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
) -> None:
    """Your progress across the catalog: labs passed, best score per lab, hints used."""
    root = workspace_root(workspace)
    console = _console()
    rows = lab_rows(all_labs(), root, console=None if as_json else console)
    passed = sum(row["status"] == "passed" for row in rows)
    if as_json:
        typer.echo(json.dumps({"workspace": str(root), "passed": passed, "total": len(rows), "labs": rows}, indent=1))
        return
    from rich.progress_bar import ProgressBar
    from rich.table import Table

    bar = Table.grid(padding=(0, 1))
    bar.add_row(ProgressBar(total=max(len(rows), 1), completed=passed, width=40), f"{passed}/{len(rows)} labs passed")
    console.print(bar)
    table = Table(title_justify="left")
    for name, justify in [("lab", "left"), ("status", "left"), ("best", "right"), ("attempts", "right"), ("hints", "right")]:
        table.add_column(name, justify=justify)
    for row in rows:
        style = _STATUS_STYLE[row["status"]]
        table.add_row(row["id"], f"[{style}]{row['status']}[/{style}]", row["best"], str(row["attempts"]),
                      f"{row['hints_used']}/{row['hints']}")
    console.print(table)
    console.print(f"Workspace: {escape(str(root))}")


def hint_command(
    lab_id: LabArgument,
    number: Annotated[int | None, typer.Argument(metavar="[N]", help="show hint N again (default: the next one)")] = None,
    workspace: WorkspaceOption = None,
) -> None:
    """Show the lab's hints in order, one at a time; the progress store counts how many you used."""
    from rich.markdown import Markdown
    from rich.panel import Panel

    lab = find_lab(lab_id)
    hints = lab.spec.hints
    console = _console()
    if not hints:
        console.print(f"{lab.id} has no hints. The check messages of `labs grade {lab.id}` say what is expected.")
        return
    store = ProgressStore(workspace_root(workspace))
    used = store.hints_used(lab.id)
    if number is None:
        if used >= len(hints):
            console.print(f"You have seen all {len(hints)} hints of {lab.id}. See one again with `labs hint {lab.id} N`.")
            return
        number = used + 1
    if not 1 <= number <= len(hints):
        raise GaplabsError(f"{lab.id} has no hint {number}", where="labs hint", fix=f"use a number from 1 to {len(hints)}")
    if number > used + 1:
        raise GaplabsError(
            f"hints come in order: you have seen {used} of {len(hints)}, so the next one is hint {used + 1}",
            where="labs hint",
            fix=f"run `labs hint {lab.id}` to see hint {used + 1} first",
        )
    store.record_hint(lab.id, number)
    console.print(Panel(Markdown(hints[number - 1]), title=f"{lab.id} · hint {number} of {len(hints)}", expand=False))
    following = max(number, used) + 1
    if following <= len(hints):
        console.print(f"[dim]Still stuck? `labs hint {lab.id}` shows hint {following}.[/dim]")


def reset_command(
    lab_id: LabArgument,
    workspace: WorkspaceOption = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask for confirmation")] = False,
) -> None:
    """Restore the starter notebook; your current notebook is saved to backups/ first."""
    lab = find_lab(lab_id)
    root = workspace_root(workspace)
    notebook = notebook_path(lab.id, root)
    console = _console()
    if not notebook.exists():
        prepare_lab(lab, root)
        console.print(f"You had no copy of {lab.id} yet; created a fresh one: {escape(str(notebook))}")
        return
    if not yes:
        typer.confirm(f"Replace {notebook} with the starter? Your notebook is backed up first", abort=True)
    backup = reset_lab(lab, root)
    console.print(f"Backed up your notebook to {escape(str(backup))}")
    console.print(f"Restored the starter: {escape(str(notebook))}")
    console.print(f"[dim]Changed your mind? Copy the backup back: cp '{escape(str(backup))}' '{escape(str(notebook))}'[/dim]")


def watch_command(
    lab_id: LabArgument,
    workspace: WorkspaceOption = None,
    device: Annotated[str, typer.Option("--device", help="cpu, cuda or auto")] = "auto",
    poll: Annotated[float, typer.Option("--poll", help="seconds between checks of the file", min=0.05)] = DEFAULT_POLL_S,
    debounce: Annotated[
        float, typer.Option("--debounce", help="seconds the file must stay unchanged before grading", min=0)
    ] = DEFAULT_DEBOUNCE_S,
) -> None:
    """Grade your notebook now and again every time you save it (Ctrl-C to stop)."""
    from grader.watch import watch_and_grade

    lab = find_lab(lab_id)
    root = workspace_root(workspace)
    notebook = _existing_notebook(lab_id, workspace)
    console = _console()
    console.print(f"Watching {escape(str(notebook))}: every save is graded. Ctrl-C to stop.")
    try:
        watch_and_grade(lab, notebook, root, device=device, console=console, poll_s=poll, debounce_s=debounce)
    except KeyboardInterrupt:
        console.print("\nStopped watching.")


def solution_command(
    lab_id: LabArgument,
    workspace: WorkspaceOption = None,
    force: Annotated[bool, typer.Option("--force", help="show it before you pass (recorded in your progress)")] = False,
) -> None:
    """Show the reference solution, once you have passed the lab (or with --force)."""
    lab = find_lab(lab_id)
    if not lab.solution_path.is_file():
        raise GaplabsError(
            f"the {lab.origin} copy of {lab.id} ships without its solution",
            where=str(lab.solution_path),
            fix="solutions come with instructor packs or the gaplabs source tree; ask your instructor",
        )
    store = ProgressStore(workspace_root(workspace))
    best = store.best(lab.id)
    passed = best is not None and best.passed
    if not passed and not force:
        standing = "you have not graded it yet" if best is None else f"your best is {_points(best.score)}/{_points(best.max_score)}"
        raise GaplabsError(
            f"the solution of {lab.id} unlocks once you pass the lab ({standing})",
            where="labs solution",
            fix=f"keep going with `labs grade {lab.id}` and `labs hint {lab.id}`; or `labs solution {lab.id} --force` (recorded)",
        )
    store.record_solution_view(lab.id, forced=not passed)
    _print_notebook(lab.solution_path, _console(), title=f"{lab.id}: reference solution")


# -- helpers --------------------------------------------------------------------------------


def _existing_notebook(lab_id: str, workspace: Path | None) -> Path:
    lab = find_lab(lab_id)
    notebook = notebook_path(lab.id, workspace_root(workspace))
    if not notebook.exists():
        raise GaplabsError(
            f"you have no copy of {lab.id} yet",
            where=str(notebook),
            fix=f"run `labs start {lab.id}` (or `labs start {lab.id} --no-jupyter` to only create the files)",
        )
    return notebook


def _print_notebook(path: Path, console, *, title: str) -> None:
    from rich.markdown import Markdown
    from rich.rule import Rule
    from rich.syntax import Syntax

    console.print(Rule(title))
    for index, cell in enumerate(read_notebook(path).cells, start=1):
        if not cell.source.strip():
            continue
        if cell.cell_type == "code":
            console.print(f"[dim]cell {index}[/dim]")
            console.print(Syntax(cell.source, "python", line_numbers=False, word_wrap=True))
        elif cell.cell_type == "markdown":
            console.print(Markdown(cell.source))
        console.print()


def _free_port() -> int:
    """A port free on 127.0.0.1 right now. Another program could take it before Jupyter binds it;
    then Jupyter exits with "address already in use" and the student runs the command again."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def jupyter_lab_command(notebook: Path, *, port: int, open_browser: bool) -> list[str]:
    """The JupyterLab command line: loopback only, rooted at the lab's folder, opening the notebook."""
    command = [
        sys.executable, "-m", "jupyterlab", notebook.name,
        f"--ServerApp.root_dir={notebook.parent}",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",  # the URL printed below must be the one that works
        f"--ServerApp.open_browser={open_browser}",
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--allow-root")  # containers and Colab-like machines run as root
    return command


def serve_jupyter_lab(notebook: Path, *, port: int, open_browser: bool, console) -> int:
    """Run JupyterLab in the foreground until it stops; return its exit code.

    The token travels in the JUPYTER_TOKEN environment variable, not on the command line, where
    any local user could read it with `ps`. The server runs in its own session and SIGINT (Ctrl-C),
    SIGTERM and SIGHUP sent to `labs` reach it as one SIGTERM: that is the signal on which Jupyter
    shuts its kernels down and removes its server file (on SIGINT without a terminal it just
    exits), and one Ctrl-C is enough, with no "shut down? (y/n)" prompt.
    """
    if importlib.util.find_spec("jupyterlab") is None:
        raise GaplabsError(
            "JupyterLab is not installed in this environment",
            where=sys.executable,
            fix="`pip install jupyterlab`, or `labs start <lab> --no-jupyter` and open the notebook in your own editor",
        )
    port = port or _free_port()
    token = secrets.token_urlsafe(24)
    command = jupyter_lab_command(notebook, port=port, open_browser=open_browser)
    url = f"http://127.0.0.1:{port}/lab/tree/{notebook.name}?token={token}"
    console.print(f"JupyterLab: {url}", soft_wrap=True)  # soft_wrap: a URL broken over two lines cannot be clicked
    console.print("[dim]Stop it with Ctrl-C. Your work is in the notebook file; the server keeps nothing else.[/dim]")
    server: list[subprocess.Popen] = []  # filled once started; the handler may run before that
    stop_requested = False

    def forward(_signum, _frame):
        nonlocal stop_requested
        stop_requested = True
        if server and server[0].poll() is None:
            server[0].terminate()

    # Handlers first, then the server: no moment where a Ctrl-C kills `labs` but not the server.
    forwarded = [sig for sig in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", None)) if sig is not None]
    previous = {sig: signal.signal(sig, forward) for sig in forwarded}
    try:
        # Its own session: a Ctrl-C in the terminal reaches only `labs`, which passes it on once.
        server.append(subprocess.Popen(
            command, cwd=notebook.parent, env={**os.environ, "JUPYTER_TOKEN": token}, start_new_session=True
        ))
        if stop_requested:
            server[0].terminate()
        code = server[0].wait()
        return code if code >= 0 else 128 - code  # killed by signal N: the shell's 128 + N
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if server and server[0].poll() is None:  # leaving for another reason (an exception): take the server along
            server[0].terminate()
            try:
                server[0].wait(timeout=10)
            except subprocess.TimeoutExpired:
                server[0].kill()
                server[0].wait()


def register(app: typer.Typer) -> None:
    """Add the student commands to the `labs` app."""
    app.command("list")(list_command)
    app.command("gaps")(gaps_command)
    app.command("start")(start_command)
    app.command("run")(run_command)
    app.command("status")(status_command)
    app.command("hint")(hint_command)
    app.command("reset")(reset_command)
    app.command("watch")(watch_command)
    app.command("solution")(solution_command)
