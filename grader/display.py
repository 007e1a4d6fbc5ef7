"""Printing grade reports with rich: a table of checks and messages that teach."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

STYLE = {"passed": "green", "failed": "red", "error": "magenta", "timeout": "yellow", "skipped": "dim"}
SYMBOL = {"passed": "✓", "failed": "✗", "error": "!", "timeout": "⏱", "skipped": "–"}


def _points(value: float) -> str:
    return f"{value:g}"


def print_report(report, console: Console | None = None) -> None:
    """A report (GradeReport or its dict) as a table, then cell errors and notes."""
    console = console or Console()
    data = report if isinstance(report, dict) else report.to_dict()
    table = Table(title=f"{data['lab']} v{data['lab_version']}  ·  {escape(str(data['submission']))}  ·  {data['device']}",
                  show_lines=True, expand=False)
    table.add_column("check", overflow="fold")
    table.add_column("points", justify="right", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("message", overflow="fold", max_width=90)
    for check in data["checks"]:
        status = check["status"]
        table.add_row(f"{escape(check['title'])}\n[dim]{check['id']}[/dim]",
                      f"{_points(check['points'])}/{_points(check['max_points'])}",
                      f"[{STYLE[status]}]{SYMBOL[status]} {status}[/]", escape(check["message"]))
    console.print(table)
    for error in data.get("cell_errors") or []:
        line = f", line {error['line']}" if error.get("line") else ""
        console.print(f"[yellow]{escape(str(error.get('label')))}{line} raised {escape(str(error.get('type')))}:[/] "
                      f"{escape(str(error.get('message')))}")
    for note in data.get("notes") or []:
        console.print(f"[dim]note: {escape(note)}[/dim]")
    if data.get("lab_error"):
        console.print(f"[magenta]lab error:[/] {escape(data['lab_error'])}")
    colour = "green" if data["passed"] else "red"
    console.print(f"[bold {colour}]score {_points(data['score'])}/{_points(data['max_score'])}[/]"
                  f"  ({data['duration_s']:.2f} s, isolation: {data.get('isolation', 'unknown')})")


def print_error(error, console: Console | None = None) -> None:
    console = console or Console(stderr=True)
    console.print(f"[bold red]error:[/] {escape(error.what)}")
    if error.where:
        console.print(f"  [dim]where:[/] {escape(error.where)}")
    if error.fix:
        console.print(f"  [dim]fix:[/]   {escape(error.fix)}")
