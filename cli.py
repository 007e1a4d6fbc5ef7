"""The `labs` command line: a thin Typer layer over the grader package's functions."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Optional

import typer
from typer.core import TyperGroup

from grader import __version__
from grader.errors import GaplabsError


class _FriendlyGroup(TyperGroup):
    """Turns user errors (GaplabsError) into a short what/where/fix message and exit code 2."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except GaplabsError as error:
            from grader.display import print_error

            print_error(error)
            raise typer.Exit(error.exit_code) from None
        except KeyboardInterrupt:
            typer.echo("interrupted; nothing was left half-written", err=True)
            raise typer.Exit(130) from None


app = typer.Typer(cls=_FriendlyGroup, help="gaplabs: hands-on, auto-graded labs for ML engineering.",
                  no_args_is_help=True, rich_markup_mode="rich", pretty_exceptions_enable=False)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"gaplabs {__version__}")
        raise typer.Exit()


@app.callback()
def main(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                      help="Print the version and exit.")) -> None:
    """Start a lab with `labs start <lab>`, grade it with `labs grade <lab>`."""


@contextlib.contextmanager
def report_errors():
    """A report that cannot be written (a folder in the way, no permission) is a clear error, not a traceback."""
    try:
        yield
    except OSError as exc:
        raise GaplabsError(f"could not write a report: {exc.strerror or exc}", where=str(exc.filename2 or exc.filename or "a report path"),
                           fix="pass a path to a file in a folder you can write (not an existing folder)") from None


@app.command()
def grade(
    lab_id: str = typer.Argument(..., metavar="LAB", help="Lab id, e.g. attention-from-scratch."),
    submission: Optional[Path] = typer.Option(None, "--submission", "-s", help="Notebook to grade (default: your working copy)."),
    submissions: Optional[Path] = typer.Option(None, "--submissions", help="Grade every .ipynb in this folder (batch)."),
    device: str = typer.Option("auto", "--device", "-d", help="cpu, cuda or auto (CUDA when available)."),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Write the JSON report here."),
    junit_path: Optional[Path] = typer.Option(None, "--junit", help="Write a JUnit XML report here."),
    jobs: int = typer.Option(1, "--jobs", "-j", min=1, help="Batch: submissions graded in parallel."),
    shard: Optional[str] = typer.Option(None, "--shard", help="Batch: grade slice i of n, e.g. 2/4."),
    gradebook: Optional[Path] = typer.Option(None, "--gradebook", help="Batch: write PREFIX.csv and PREFIX.json."),
    gradescope: Optional[Path] = typer.Option(None, "--gradescope", help="Write a Gradescope results.json here."),
    workspace: Optional[Path] = typer.Option(None, "--workspace", "-w", envvar="GAPLABS_WORKSPACE",
                                             help="Your workspace folder (default ~/gaplabs)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only the score line."),
) -> None:
    """Grade a notebook against the lab's hidden checks (exit 0 = full marks, 1 = not, 2 = usage error)."""
    from grader.registry import find_lab

    lab = find_lab(lab_id)
    if submissions is not None:
        from grader.batch import grade_batch_command

        with report_errors():
            code = grade_batch_command(lab, submissions, device=device, jobs=jobs, shard=shard, json_path=json_path,
                                       junit_path=junit_path, gradebook=gradebook, gradescope=gradescope, quiet=quiet)
        raise typer.Exit(code)
    recording = submission is None
    if submission is None:
        from grader.workspace import notebook_path, workspace_root

        workspace = workspace_root(workspace)
        submission = notebook_path(lab.id, workspace)
        if not submission.exists():
            raise GaplabsError(f"you have no working copy of {lab.id!r} yet", where=str(submission),
                               fix=f"run `labs start {lab.id}` first, or pass --submission PATH")
    from grader.engine import grade as grade_notebook

    report = grade_notebook(lab, notebook=submission, device=device)
    data = report.to_dict()
    if quiet:
        typer.echo(f"{lab.id}: {data['score']:g}/{data['max_score']:g}")
    else:
        from grader.display import print_report

        print_report(data)
    if json_path or junit_path or gradescope:
        from grader import reports

        with report_errors():
            if json_path:
                reports.write_json(data, json_path)
            if junit_path:
                reports.write_junit([data], junit_path)
            if gradescope:
                reports.write_gradescope(data, gradescope)
    if recording:
        from grader.store import ProgressStore
        from grader.workspace import submission_sha256

        ProgressStore(workspace).record_grade(data, submission_sha256(submission))
        if not data["passed"] and not quiet:
            typer.echo(f"Stuck? `labs hint {lab.id}` shows the next hint.")
    if data.get("lab_error"):
        raise typer.Exit(2)
    raise typer.Exit(0 if data["passed"] else 1)


from grader import cli_ci, cli_instructor, cli_student  # noqa: E402  (commands register on `app`)

for _commands in (cli_student, cli_instructor, cli_ci):
    _commands.register(app)


if __name__ == "__main__":
    sys.exit(app())
