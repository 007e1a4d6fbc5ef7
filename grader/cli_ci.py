"""The CI commands of the `labs` CLI: `fetch` (install a lab pack) and `gradebook merge|check`.

Each command parses its options and calls one function of grader.packs or grader.reports. Errors
are GaplabsError, which the main CLI prints as what/where/fix with exit code 2. Exit codes CI
relies on: 0 success, 1 a threshold missed (`gradebook check`), 2 a usage or input error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from grader.errors import GaplabsError


def _console(stderr: bool = False):
    from rich.console import Console

    return Console(stderr=stderr)


def fetch_command(
    source: Annotated[str, typer.Argument(help="A pack folder, a git remote (…/x.git, git+URL) or an https .tar.gz URL.")],
    sha256: Annotated[str | None, typer.Option("--sha256", help="Required for http(s): the tarball's sha256.")] = None,
    name: Annotated[str | None, typer.Option("--name", help="Install as this pack name (default: from SOURCE).")] = None,
    home: Annotated[Path | None, typer.Option("--home", envvar="GAPLABS_HOME",
                                                 help="Where packs are installed (default ~/.gaplabs).")] = None,
) -> None:
    """Install the labs of a lab pack under <home>/packs/<name>/ after checking its manifest, hash and paths."""
    from rich.markup import escape

    from grader.packs import fetch
    from grader.registry import gaplabs_home

    home = home or gaplabs_home()
    warnings = _console(stderr=True)
    ids = fetch(source, sha256=sha256, home=home, name=name,
                warn=lambda message: warnings.print(f"[yellow]warning:[/] {escape(message)}"))
    console = _console()
    console.print(f"installed {len(ids)} lab(s) from {escape(source)}: {', '.join(ids)}")
    console.print("`labs list` shows them with their origin.")


def merge_command(
    gradebooks: Annotated[list[Path], typer.Argument(help="Shard gradebooks (.json, .csv beside a .json, or PREFIX).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Write OUT.csv and OUT.json.")],
    summary: Annotated[bool, typer.Option("--summary/--no-summary",
                                          help="Append a Markdown summary to $GITHUB_STEP_SUMMARY when set.")] = True,
) -> None:
    """Join the gradebooks of CI shards (`labs grade --shard i/n`) into one; refuses mixed labs or repeats."""
    from grader import reports

    book = reports.merge_gradebooks(gradebooks, out.with_name(out.name + ".csv"), out.with_name(out.name + ".json"))
    if summary:
        reports.append_step_summary(reports.summary_markdown(book))
    counts = book["summary"]
    _console().print(f"merged {len(gradebooks)} gradebook(s): {counts['submissions']} submissions of "
                     f"{book['lab'] or 'no lab'} -> {out}.csv, {out}.json")


def check_command(
    gradebook: Annotated[Path, typer.Argument(help="A gradebook (.json, the .csv beside it, or PREFIX).")],
    min_average: Annotated[float | None, typer.Option(
        "--min-average", help="Fail when the class average is below this fraction of the points (0.6 = 60%).")] = None,
    min_pass_rate: Annotated[float | None, typer.Option(
        "--min-pass-rate", help="Fail when fewer than this fraction of submissions have full marks.")] = None,
    max_errors: Annotated[int | None, typer.Option(
        "--max-errors", min=0, help="Fail when more submissions than this hit grading errors or timeouts.")] = None,
) -> None:
    """Exit 1 when the gradebook misses a threshold (a CI gate); each missed one is printed."""
    from rich.markup import escape

    from grader import reports

    if min_average is None and min_pass_rate is None and max_errors is None:
        raise GaplabsError("no threshold given", where="labs gradebook check",
                           fix="pass at least one of --min-average, --min-pass-rate, --max-errors")
    book = reports.read_gradebook(gradebook)
    missed = reports.check_thresholds(book, min_average=min_average, min_pass_rate=min_pass_rate, max_errors=max_errors)
    counts = book["summary"]
    average = f"{counts['mean_fraction']:.1%}" if counts["mean_fraction"] is not None else "n/a"
    console = _console()
    console.print(f"{book['lab'] or 'no lab'}: {counts['submissions']} submissions, class average {average}, "
                  f"{counts['ok']} full marks, {counts['error']} with grading errors")
    for sentence in missed:
        console.print(f"[red]below threshold:[/] {escape(sentence)}")
    if missed:
        raise typer.Exit(1)
    console.print("[green]all thresholds met[/]")


def register(app: typer.Typer) -> None:
    app.command("fetch")(fetch_command)
    gradebook = typer.Typer(help="Gradebooks of `labs grade --submissions`: merge CI shards, gate on thresholds.",
                            no_args_is_help=True)
    gradebook.command("merge")(merge_command)
    gradebook.command("check")(check_command)
    app.add_typer(gradebook, name="gradebook")
