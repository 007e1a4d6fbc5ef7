"""`labs validate`: prove a lab is consistent before it ships (checks, starter, solution, mutants).

The steps run in order and each one is reported, so one run shows everything that is wrong:

1. schema: lab.yaml is valid.
2. checks: every `test_*` function in checks/ has a lab.yaml entry and every entry a function.
3. starter: starter.ipynb is what `labs release` generates from the solution.
4. solution: the solution gets full marks.
5. starter fails: every check with points that is not `free: true` fails on the starter.
6. mutants: each mutant loses the points of every check its header names.
7. time: the solution grades within `limits.grade_budget_s`.

Gradings of one lab run one after another: the engine already uses both cores of a small machine,
and running them side by side would make the timing step measure contention, not the lab.
A check skipped by the engine (a CUDA-only check on a CPU run) cannot prove anything here; it is
reported in the detail instead of failing the lab, so a CPU-only CI still validates the rest.
"""

from __future__ import annotations

import ast
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from grader.authoring import load_mutants, starter_sync_problem
from grader.errors import GaplabsError
from grader.registry import Lab

Status = Literal["ok", "FAIL", "skip"]
# grade(lab, *, notebook, extra_code, device) -> GradeReport; injectable so tests can fake it.
GradeFunction = Callable[..., Any]


@dataclass
class Step:
    """One line of a lab's validation table."""

    name: str
    status: Status
    detail: str = ""
    duration_s: float = 0.0


@dataclass
class LabValidation:
    lab_id: str
    lab_dir: str
    device: str
    steps: list[Step] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(step.status != "FAIL" for step in self.steps)

    @property
    def failures(self) -> list[Step]:
        return [step for step in self.steps if step.status == "FAIL"]

    def to_dict(self) -> dict:
        return {
            "lab": self.lab_id,
            "dir": self.lab_dir,
            "device": self.device,
            "ok": self.ok,
            "steps": [asdict(s) for s in self.steps],
        }


# ---------------------------------------------------------------------------------------------
# Static steps: no grading needed


def check_functions(lab: Lab) -> dict[str, str]:
    """Check ids defined in checks/test_*.py (function name minus 'test_') -> 'file:line'.

    The files are parsed with `ast`, not imported: validating a lab must not run its checks. Only
    top-level functions count, as the engine collects no test classes (docs/check-api.md).
    """
    found: dict[str, str] = {}
    for path in sorted(lab.checks_dir.glob("test_*.py")):
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        except SyntaxError as exc:
            raise GaplabsError(
                f"{path.name} is not valid Python: {exc.msg}", where=f"{path}, line {exc.lineno}"
            ) from None
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test_"):
                check_id = node.name.removeprefix("test_")
                where = f"{path.name}:{node.lineno}"
                if check_id in found:
                    raise GaplabsError(
                        f"check {check_id!r} is defined twice ({found[check_id]} and {where})", where=where
                    )
                found[check_id] = where
    return found


def _step_checks_match(lab: Lab) -> Step:
    if not lab.checks_dir.is_dir():
        return Step("checks match lab.yaml", "FAIL", f"no checks/ folder in {lab.dir}")
    try:
        functions = check_functions(lab)
    except GaplabsError as exc:
        return Step("checks match lab.yaml", "FAIL", f"{exc.what} ({exc.where})")
    declared = {check.id for check in lab.spec.checks}
    problems = [
        f"test_{cid} ({functions[cid]}) has no entry in lab.yaml" for cid in sorted(functions.keys() - declared)
    ]
    problems += [
        f"lab.yaml check {cid!r} has no function test_{cid} in checks/" for cid in sorted(declared - functions.keys())
    ]
    if problems:
        return Step("checks match lab.yaml", "FAIL", "; ".join(problems))
    return Step("checks match lab.yaml", "ok", f"{len(functions)} checks")


def _step_starter_in_sync(lab: Lab) -> Step:
    try:
        problem = starter_sync_problem(lab)
    except GaplabsError as exc:
        return Step("starter in sync", "FAIL", _one_line(exc))
    return (
        Step("starter in sync", "FAIL", problem) if problem else Step("starter in sync", "ok", "matches `labs release`")
    )


# ---------------------------------------------------------------------------------------------
# Graded steps


def lab_device(lab: Lab, device: str) -> tuple[str | None, str]:
    """The device to validate `lab` on, or (None, why not) when the lab does not run there.

    "auto" picks CUDA when torch sees a GPU and the lab lists cuda, else the CPU: a CPU-only lab
    still validates on a GPU machine.
    """
    from grader.engine import resolve_device

    devices = lab.spec.devices
    if device == "auto":
        import torch

        chosen = "cuda" if "cuda" in devices and torch.cuda.is_available() else "cpu"
    else:
        chosen = resolve_device(device)  # GaplabsError when CUDA is asked for and absent
    if chosen not in devices:
        return None, f"the lab runs on {', '.join(devices)}, not on {chosen}"
    return chosen, ""


def _grade(
    grade: GradeFunction, lab: Lab, *, notebook: Path, extra_code: Sequence[str] = (), device: str
) -> tuple[Any, float]:
    started = time.perf_counter()
    report = grade(lab, notebook=notebook, extra_code=list(extra_code), device=device)
    return report, time.perf_counter() - started


def _first_line(text: str | None, limit: int = 160) -> str:
    line = (text or "").strip().splitlines()[0] if (text or "").strip() else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, GaplabsError):
        return f"{exc.what}" + (f" ({exc.where})" if exc.where else "")
    return f"{type(exc).__name__}: {_first_line(str(exc))}"


def _skipped_note(report: Any) -> str:
    skipped = [c.id for c in report.checks if c.status == "skipped"]
    return f"; not run here (skipped): {', '.join(skipped)}" if skipped else ""


def _cell_errors(report: Any, *, extra_only: bool = False) -> list[str]:
    errors = getattr(report, "cell_errors", None) or []
    return [
        f"{error.get('label')}: {error.get('type')}: {_first_line(error.get('message'))}"
        for error in errors
        if not extra_only or str(error.get("label", "")).startswith("extra")
    ]


def _step_solution(report: Any) -> Step:
    name = "solution gets full marks"
    lab_error = getattr(report, "lab_error", None)
    if lab_error:
        return Step(name, "FAIL", f"the checks could not run: {_first_line(lab_error, 400)}", report.duration_s)
    missing = [c for c in report.checks if c.status != "skipped" and (c.status != "passed" or c.points < c.max_points)]
    raised = _cell_errors(report)
    problems = [f"{c.id}: {c.status} ({_first_line(c.message)})" for c in missing]
    problems += [f"a solution cell raised ({error})" for error in raised]
    if problems:
        return Step(name, "FAIL", f"{report.score:g}/{report.max_score:g}: " + "; ".join(problems), report.duration_s)
    return Step(name, "ok", f"{report.score:g}/{report.max_score:g}{_skipped_note(report)}", report.duration_s)


def _step_starter_fails(lab: Lab, report: Any) -> Step:
    must_fail = {c.id for c in lab.spec.checks if c.points > 0 and not c.free}
    passing = [c.id for c in report.checks if c.id in must_fail and c.status == "passed"]
    if passing:
        return Step(
            "starter fails the checks",
            "FAIL",
            f"passed on the starter: {', '.join(passing)} (make them depend on the student's code, or mark them free: true)",
            report.duration_s,
        )
    return Step(
        "starter fails the checks",
        "ok",
        f"{report.score:g}/{report.max_score:g} on the starter{_skipped_note(report)}",
        report.duration_s,
    )


def _step_mutant(name: str, catches: Sequence[str], why: str, report: Any) -> Step:
    by_id = {c.id: c for c in report.checks}
    escaped, unverified = [], []
    for check_id in catches:
        result = by_id.get(check_id)
        if result is None or result.status == "skipped":
            unverified.append(check_id)
        elif result.status == "passed" or (result.max_points > 0 and result.points >= result.max_points):
            escaped.append(check_id)
    label = f"mutant {name}"
    if escaped:
        detail = f"not caught by {', '.join(escaped)} ({why or 'no # why: line'})"
        raised = _cell_errors(report, extra_only=True)
        if raised:
            detail += f"; the mutant's code itself raised, so it overrode nothing: {raised[0]}"
        return Step(label, "FAIL", detail, report.duration_s)
    caught = [c for c in catches if c not in unverified]
    detail = f"caught by {', '.join(caught)}" if caught else "nothing verifiable here"
    if unverified:
        detail += f"; not run here (skipped): {', '.join(unverified)}"
    return Step(label, "ok", detail if why else detail + "; add a '# why:' line", report.duration_s)


def _step_time(lab: Lab, solution_seconds: float) -> Step:
    budget = lab.spec.limits.grade_budget_s
    detail = f"{solution_seconds:.1f} s for a budget of {budget:g} s"
    if solution_seconds > budget:
        return Step(
            "solution grading time", "FAIL", detail + " (make the checks cheaper or raise limits.grade_budget_s)"
        )
    return Step("solution grading time", "ok", detail)


# ---------------------------------------------------------------------------------------------
# The whole run


def validate_lab(lab: Lab, *, device: str = "auto", grade: GradeFunction | None = None) -> LabValidation:
    """Every step for one lab; a failing step is recorded and the remaining steps still run.

    Only a broken lab.yaml stops early: without it nothing else can be interpreted.
    """
    if grade is None:
        from grader.engine import grade  # imported late: the static steps must not need torch
    result = LabValidation(lab_id=lab.id, lab_dir=str(lab.dir), device=device)
    steps = result.steps
    try:
        spec = lab.spec
    except GaplabsError as exc:
        steps.append(Step("lab.yaml schema", "FAIL", _one_line(exc)))
        return result
    steps.append(Step("lab.yaml schema", "ok", f"{len(spec.checks)} checks, {spec.max_points:g} points"))
    steps.append(_step_checks_match(lab))
    steps.append(_step_starter_in_sync(lab))
    try:
        mutants, mutant_error = load_mutants(lab), None
    except GaplabsError as exc:
        mutants, mutant_error = [], exc

    chosen, why_not = lab_device(lab, device)
    result.device = chosen or device
    if chosen is None:
        for name in ("solution gets full marks", "starter fails the checks", "mutants", "solution grading time"):
            steps.append(Step(name, "skip", why_not))
        return result

    def graded(name: str, notebook: Path, judge: Callable[[Any], Step], extra_code: Sequence[str] = ()) -> float | None:
        """Grade once and append the judged step; a crash becomes a FAIL step. Returns seconds."""
        if not notebook.is_file():
            fix = f"; run `labs release {lab.id}`" if notebook == lab.starter_path else ""
            steps.append(Step(name, "FAIL", f"no notebook at {notebook}{fix}"))
            return None
        try:
            report, seconds = _grade(grade, lab, notebook=notebook, extra_code=extra_code, device=chosen)
        except Exception as exc:  # one broken grading must not hide the other steps
            steps.append(Step(name, "FAIL", f"grading crashed: {_one_line(exc)}"))
            return None
        steps.append(judge(report))
        return seconds

    solution_seconds = graded("solution gets full marks", lab.solution_path, _step_solution)
    graded("starter fails the checks", lab.starter_path, lambda report: _step_starter_fails(lab, report))
    if mutant_error is not None:
        steps.append(Step("mutants", "FAIL", _one_line(mutant_error)))
    elif not mutants:
        steps.append(Step("mutants", "FAIL", f"no mutants in {lab.mutants_dir}: add at least one realistic mistake"))
    for mutant in mutants:
        graded(
            f"mutant {mutant.name}",
            lab.solution_path,
            lambda report, m=mutant: _step_mutant(m.name, m.catches, m.why, report),
            extra_code=[mutant.source],
        )
    if solution_seconds is None:
        steps.append(Step("solution grading time", "skip", "the solution was not graded"))
    else:
        steps.append(_step_time(lab, solution_seconds))
    if mutants:
        steps.append(_step_mutant_coverage(lab, mutants))
    _mark_inconclusive(steps)
    return result


def _step_mutant_coverage(lab: Lab, mutants: Sequence[Any]) -> Step:
    """Informational: a check with points that no mutant names has never been seen to fail."""
    named = {check_id for mutant in mutants for check_id in mutant.catches}
    uncovered = [c.id for c in lab.spec.checks if c.points > 0 and c.id not in named]
    if uncovered:
        return Step("mutant coverage", "ok", f"no mutant names {', '.join(uncovered)} (consider adding one)")
    return Step("mutant coverage", "ok", "every check with points is named by a mutant")


def _mark_inconclusive(steps: list[Step]) -> None:
    """While the solution itself loses points, a check failing on the starter or a mutant proves
    nothing (it may fail on everything). Those "ok"s become "skip"; real FAILs stay visible."""
    solution = next((step for step in steps if step.name == "solution gets full marks"), None)
    if solution is None or solution.status == "ok":
        return
    for step in steps:
        if step.status == "ok" and (step.name == "starter fails the checks" or step.name.startswith("mutant ")):
            step.status = "skip"
            step.detail = f"inconclusive while the solution does not get full marks ({step.detail})"


def validate_labs(
    labs: Sequence[Lab],
    *,
    device: str = "auto",
    grade: GradeFunction | None = None,
    on_lab: Callable[[LabValidation], None] | None = None,
) -> list[LabValidation]:
    """Validate labs one after another; `on_lab` sees each result as soon as it is ready."""
    results = []
    for lab in labs:
        result = validate_lab(lab, device=device, grade=grade)
        if on_lab is not None:
            on_lab(result)
        results.append(result)
    return results


def report_dict(results: Sequence[LabValidation]) -> dict:
    """The `--json` file: {"ok": bool, "labs": [{"lab", "dir", "device", "ok", "steps": [...]}]}."""
    return {
        "format": "gaplabs-validate",
        "format_version": 1,
        "ok": all(r.ok for r in results),
        "labs": [r.to_dict() for r in results],
    }


# ---------------------------------------------------------------------------------------------
# Printing


def render_table(result: LabValidation) -> Any:
    """A rich table for one lab: what was checked, ok/FAIL/skip, and the detail."""
    from rich.table import Table
    from rich.text import Text

    colour = {"ok": "green", "FAIL": "bold red", "skip": "yellow"}
    table = Table(
        title=f"{result.lab_id}  ({'ok' if result.ok else 'FAIL'}, device {result.device})",
        title_justify="left",
        expand=False,
    )
    table.add_column("checked")
    table.add_column("result")
    table.add_column("detail", overflow="fold")
    table.add_column("time", justify="right")
    for step in result.steps:
        seconds = f"{step.duration_s:.1f} s" if step.duration_s else ""
        # Text(), not markup: a detail quoting student output may contain "[...]".
        table.add_row(Text(step.name), Text(step.status, style=colour[step.status]), Text(step.detail), seconds)
    return table


def summary_line(results: Sequence[LabValidation]) -> str:
    failed = [r for r in results if not r.ok]
    steps = sum(len(r.failures) for r in failed)
    ungraded = [r.lab_id for r in results if r.ok and _never_graded(r)]
    tail = f" ({len(ungraded)} not graded on this device: {', '.join(ungraded)})" if ungraded else ""
    if not failed:
        return f"validated {len(results)} lab(s): all ok{tail}"
    names = ", ".join(r.lab_id for r in failed)
    return f"validated {len(results)} lab(s): {len(failed)} failed ({steps} failing step(s)): {names}{tail}"


def _never_graded(result: LabValidation) -> bool:
    solution = next((step for step in result.steps if step.name == "solution gets full marks"), None)
    return solution is not None and solution.status == "skip"
