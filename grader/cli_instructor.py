"""The instructor commands of the `labs` CLI: release, validate, new, pack.

Each command parses its options and calls one function of grader.authoring, grader.validate or
grader.packing; the behaviour lives there. Authoring mistakes are raised as GaplabsError, which
the main CLI prints without a traceback.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer

from grader.errors import GaplabsError
from grader.registry import EXTRA_ROOTS_ENV, Lab, all_labs, bundled_root, find_lab, pack_roots


def _console():
    from rich.console import Console

    # soft_wrap: a long path stays on one line (copyable); tables still fit the terminal.
    return Console(soft_wrap=True, highlight=False)


def _plain(value: object) -> str:
    """Text safe to embed in rich markup: a path or message may contain '[...]'."""
    from rich.markup import escape

    return escape(str(value))


def _select_labs(lab_ids: list[str] | None, every: bool, *, command: str) -> list[Lab]:
    """The named labs, or with --all every lab that carries its solution (instructor material).

    Installed student packs have no solutions; --all leaves them out instead of failing on them.
    """
    if lab_ids and every:
        raise GaplabsError(
            "name labs or pass --all, not both", where=f"labs {command}", fix=f"e.g. `labs {command} --all`"
        )
    if every:
        return [lab for lab in all_labs() if lab.solution_path.is_file() or not lab.origin.startswith("pack:")]
    if not lab_ids:
        raise GaplabsError(
            "no lab named",
            where=f"labs {command}",
            fix=f"name one or more lab ids, or pass --all (e.g. `labs {command} --all`)",
        )
    return [find_lab(lab_id) for lab_id in lab_ids]


def release_command(
    lab_ids: Annotated[list[str] | None, typer.Argument(metavar="[LAB]...", help="lab ids")] = None,
    every: Annotated[bool, typer.Option("--all", help="every lab with a solution notebook")] = False,
    check: Annotated[bool, typer.Option("--check", help="write nothing; exit 1 when a starter is out of sync")] = False,
) -> None:
    """Generate labs/<id>/starter.ipynb from solutions/<id>/solution.ipynb (marked regions become stubs)."""
    from grader.authoring import release

    console = _console()
    stale, broken = [], []
    for lab in _select_labs(lab_ids, every, command="release"):
        try:
            result = release(lab, write=not check)
        except GaplabsError as error:  # one broken solution must not stop the other labs
            from grader.display import print_error

            print_error(error)
            broken.append(lab.id)
            continue
        regions = f"{len(result.regions)} region(s)"
        if not result.changed:
            console.print(f"{lab.id}: starter up to date ({regions})")
        elif check:
            stale.append(lab.id)
            console.print(f"[red]{lab.id}: starter out of sync with the solution[/] (run `labs release {lab.id}`)")
        else:
            console.print(f"{lab.id}: wrote {_plain(result.starter_path)} ({regions})")
    if broken:
        raise typer.Exit(2)
    if stale:
        raise typer.Exit(1)


def validate_command(
    lab_ids: Annotated[list[str] | None, typer.Argument(metavar="[LAB]...", help="lab ids")] = None,
    every: Annotated[bool, typer.Option("--all", help="every lab with a solution notebook")] = False,
    device: Annotated[str, typer.Option("--device", help="cpu, cuda or auto")] = "auto",
    json_path: Annotated[Path | None, typer.Option("--json", help="also write the results as JSON here")] = None,
) -> None:
    """Prove labs are consistent: schema, checks, starter in sync, solution full marks, starter and mutants fail."""
    from grader.atomic import atomic_write_text
    from grader.validate import render_table, report_dict, summary_line, validate_labs

    if device not in ("cpu", "cuda", "auto"):
        raise GaplabsError(f"unknown device {device!r}", where="--device", fix="use cpu, cuda or auto")
    labs = _select_labs(lab_ids, every, command="validate")
    console = _console()
    results = validate_labs(labs, device=device, on_lab=lambda result: console.print(render_table(result)))
    if json_path is not None:
        atomic_write_text(json_path, json.dumps(report_dict(results), indent=1) + "\n")
    ok = all(result.ok for result in results)
    console.print(f"[{'green' if ok else 'bold red'}]{_plain(summary_line(results))}[/]")
    if not ok:
        raise typer.Exit(1)


def new_command(
    lab_id: Annotated[str, typer.Argument(metavar="ID", help="lowercase words joined by hyphens")],
    root: Annotated[
        Path | None, typer.Option("--root", help="pack root holding labs/ and solutions/ (default: this checkout)")
    ] = None,
    title: Annotated[str | None, typer.Option("--title", help="the lab's title")] = None,
) -> None:
    """Scaffold a lab (lab.yaml, a check, a mutant, a solution with one marked region, its starter)."""
    from grader.authoring import new_lab

    if root is None:
        # This folder when it is a pack root; else the source checkout gaplabs runs from; never an
        # installed wheel's data folder (it would vanish with the next upgrade).
        source_tree = bundled_root()
        in_checkout = (source_tree / "pyproject.toml").is_file()
        root = source_tree if in_checkout and not (Path.cwd() / "labs").is_dir() else Path.cwd()
    root = root.resolve()
    scaffold = new_lab(lab_id, root=root, title=title)
    console = _console()
    for path in scaffold.files:
        console.print(f"created {_plain(path)}")
    if root not in [found for found, _ in pack_roots()]:
        export = f"export {EXTRA_ROOTS_ENV}={root}{os.pathsep}${EXTRA_ROOTS_ENV}"
        console.print(_plain(f"{root} is not a lab root yet: `{export}`"))
    console.print(
        f"next: edit the files, then `labs release {lab_id}` and `labs validate {lab_id}` (docs/writing-a-lab.md)"
    )


def pack_command(
    lab_ids: Annotated[list[str], typer.Argument(metavar="LAB...", help="lab ids")],
    student: Annotated[
        Path | None, typer.Option("--student", help="write a student pack (no solutions, checks or mutants) here")
    ] = None,
    instructor: Annotated[
        Path | None, typer.Option("--instructor", help="write an instructor pack (everything) here")
    ] = None,
) -> None:
    """Write a pack root (labs/<id>/, solutions/<id>/ for instructors, gaplabs-pack.json) into a new folder."""
    from grader.packing import pack_labs

    if (student is None) == (instructor is None):
        raise GaplabsError(
            "choose exactly one of --student DIR or --instructor DIR",
            where="labs pack",
            fix="e.g. `labs pack my-lab --student dist/students`",
        )
    kind, dest = ("student", student) if student is not None else ("instructor", instructor)
    result = pack_labs([find_lab(lab_id) for lab_id in lab_ids], dest=dest, kind=kind)
    _console().print(
        f"wrote a {kind} pack of {len(result.manifest['labs'])} lab(s), {len(result.files)} files, to {result.dest}"
    )


def register(app: typer.Typer) -> None:
    """Add `release`, `validate`, `new` and `pack` to the `labs` app."""
    app.command("release")(release_command)
    app.command("validate")(validate_command)
    app.command("new")(new_command)
    app.command("pack")(pack_command)
