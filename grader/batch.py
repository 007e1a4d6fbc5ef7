"""`labs grade <lab> --submissions DIR`: a class's notebooks graded in parallel, reports for CI."""

from __future__ import annotations

from pathlib import Path

from grader.errors import GaplabsError
from grader.registry import Lab


def find_submissions(folder: Path) -> list[Path]:
    """Every notebook under `folder` (Jupyter's checkpoint copies excluded), sorted by path."""
    if not folder.is_dir():
        raise GaplabsError(f"{folder} is not a folder", where="--submissions",
                           fix="pass the folder that holds the submitted .ipynb files")
    notebooks = sorted(p for p in folder.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
    if not notebooks:
        raise GaplabsError(f"no .ipynb files in {folder}", where="--submissions", fix="check the folder")
    return notebooks


def grade_batch_command(lab: Lab, folder: Path, *, device: str, jobs: int, shard: str | None,
                        json_path: Path | None, junit_path: Path | None, gradebook: Path | None,
                        gradescope: Path | None, quiet: bool) -> int:
    """Grade, print a progress bar and a summary, write the asked-for reports; return the exit code."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from grader import reports
    from grader.engine import error_report, grade_many, resolve_device

    notebooks = find_submissions(folder)
    if shard:
        index, count = reports.parse_shard(shard)
        notebooks = reports.shard(notebooks, index, count)
    device = resolve_device(device)
    console = Console(stderr=True)
    results: list[dict] = []
    # No auto-refresh: its thread would be running while the engine forks grading processes.
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, auto_refresh=False, disable=quiet) as progress:
        task = progress.add_task(f"grading {lab.id}", total=len(notebooks))
        progress.refresh()

        def on_result(path, report, error):
            data = report.to_dict() if report is not None else error_report(lab, device, path.name, error or "unreadable")
            data["submission"] = str(path.relative_to(folder))
            results.append(data)
            progress.advance(task)
            progress.refresh()

        grade_many(lab, notebooks, device=device, jobs=jobs, on_result=on_result)
    results.sort(key=lambda data: data["submission"])
    if json_path:
        reports.write_json(results, json_path)
    if junit_path:
        reports.write_junit(results, junit_path)
    if gradebook:
        reports.write_gradebook(results, gradebook.with_name(gradebook.name + ".csv"),
                                gradebook.with_name(gradebook.name + ".json"), lab=lab.id, lab_version=lab.spec.version)
    if gradescope:
        gradescope.mkdir(parents=True, exist_ok=True)
        for data in results:
            reports.write_gradescope(data, gradescope / (Path(data["submission"]).stem + ".json"))
    reports.append_github_summary(results)
    passed = sum(1 for data in results if data["passed"])
    out = Console()
    out.print(f"{lab.id}: {passed}/{len(results)} submissions with full marks"
              + (f" (shard {shard})" if shard else ""))
    if not quiet:
        for data in results:
            mark = "[green]✓[/]" if data["passed"] else "[red]✗[/]"
            out.print(f"  {mark} {data['submission']}: {data['score']:g}/{data['max_score']:g}")
    return 0 if passed == len(results) else 1
