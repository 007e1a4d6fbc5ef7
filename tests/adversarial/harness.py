"""Shared tools of the adversarial suite: hostile notebooks on the real lab, graded the way CI grades them.

A run grades one notebook through the real `labs grade` command line (or `grade()` where the
command line cannot express the case) and keeps what an observer outside the grader can see:
the exit code, stdout and stderr, the JSON report, and every process still alive afterwards that
carries the run's marker. Attacks name their processes with the marker (`__MARK__` in their code),
and the marker is also part of the report path on the grader's command line, so every process
forked from the grader carries it too.

Every run also lands in the ledger (`GAPLABS_ADVERSARIAL_LEDGER`, JSON lines), from which
bench/adversarial_report.py builds the figures table of docs/adversarial.md.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LAB_ID = "attention-from-scratch"
LAB_DIR = ROOT / "labs" / LAB_ID
SOLUTION = ROOT / "solutions" / LAB_ID / "solution.ipynb"
STATUSES = {"passed", "failed", "error", "timeout", "skipped"}
REPORT_KEYS = {"lab", "lab_version", "submission", "device", "score", "max_score", "passed", "duration_s", "checks"}
CHECK_KEYS = {"id", "title", "points", "max_points", "status", "message"}
LEDGER_ENV = "GAPLABS_ADVERSARIAL_LEDGER"


# -- notebooks ----------------------------------------------------------------------------------
def make_notebook(path: Path, cells: list[str]) -> Path:
    """A v4 notebook whose code cells hold `cells`, in order."""
    notebook = {"nbformat": 4, "nbformat_minor": 5, "metadata": {},
                "cells": [{"cell_type": "code", "id": f"c{i}", "metadata": {}, "source": source, "outputs": [],
                           "execution_count": None} for i, source in enumerate(cells)]}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(notebook))
    return path


def graded_sources(path: Path) -> list[str]:
    """The code cells the grader runs (cells tagged grader:skip left out), as strings."""
    cells = json.loads(path.read_text())["cells"]
    sources = []
    for cell in cells:
        if cell["cell_type"] != "code" or "grader:skip" in (cell.get("metadata") or {}).get("tags", []):
            continue
        source = cell["source"]
        sources.append("".join(source) if isinstance(source, list) else source)
    return sources


def solution_cell(defines: str) -> str:
    """The solution's cell that defines `defines` (a function or class name)."""
    for source in graded_sources(SOLUTION):
        if f"def {defines}(" in source or f"class {defines}(" in source:
            return source
    raise LookupError(f"the solution of {LAB_ID} has no cell defining {defines}")


def header_cell() -> str:
    """The solution's first code cell: imports and the seed."""
    return graded_sources(SOLUTION)[0]


def check_points(prefix: str = "") -> float:
    """Points of the lab's checks whose id starts with `prefix` (all checks by default)."""
    import yaml

    spec = yaml.safe_load((LAB_DIR / "lab.yaml").read_text())
    return float(sum(check["points"] for check in spec["checks"] if check["id"].startswith(prefix)))


# -- lab copies (for attacks that plant files next to the lab, or need other limits) --------------
def copy_lab(root: Path, *, limits: dict | None = None, git: bool = False) -> Path:
    """A pack root holding a copy of the real lab (checks, mutants, solution); returns the root.

    `limits` overrides keys of lab.yaml's `limits` (timing attacks cost seconds, not minutes);
    `git` commits the copy, as a pack fetched with `labs fetch <git remote>` is.
    """
    import yaml

    lab = root / "labs" / LAB_ID
    shutil.copytree(LAB_DIR, lab, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(SOLUTION.parent, root / "solutions" / LAB_ID)
    if limits:
        spec = yaml.safe_load((lab / "lab.yaml").read_text())
        spec["limits"] = {**spec.get("limits", {}), **limits}
        (lab / "lab.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    if git:
        quiet = {"capture_output": True, "check": True, "cwd": root}
        subprocess.run(["git", "init", "-q"], **quiet)
        subprocess.run(["git", "add", "-A"], **quiet)
        subprocess.run(["git", "-c", "user.name=lab", "-c", "user.email=lab@example.org", "commit", "-qm", "pack"], **quiet)
    return root


# -- processes ----------------------------------------------------------------------------------
def new_marker() -> str:
    """A unique name fragment; 11 characters, so it also fits a process's 15-character comm."""
    return "glx" + secrets.token_hex(4)


def processes_with(marker: str) -> list[str]:
    """Living processes whose command line or name contains `marker`, as 'pid name cmdline'."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                state = handle.read().rsplit(")", 1)[1].split()[0]
            with open(f"/proc/{entry}/comm") as handle:
                comm = handle.read().strip()
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                cmdline = handle.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()
        except (OSError, IndexError):
            continue
        if state in ("Z", "X"):
            continue
        if marker in comm or marker in cmdline:
            found.append(f"{entry} {comm} {cmdline[:160]}")
    return found


def leftovers(marker: str, grace_s: float = 3.0) -> list[str]:
    """Processes carrying `marker` that are still alive `grace_s` seconds from now (killing is not instant)."""
    deadline = time.monotonic() + grace_s
    while True:
        alive = processes_with(marker)
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.1)


def kill_marked(marker: str) -> None:
    """Clean up after a failed test: SIGKILL what carries the marker (only processes this suite made)."""
    for line in processes_with(marker):
        try:
            os.kill(int(line.split()[0]), 9)
        except (ProcessLookupError, PermissionError):
            pass


# -- the command line ---------------------------------------------------------------------------
def cli_env(home: Path, *, labs_path: Path | None = None, pythonpath: Path = ROOT, cwd: Path | None = None) -> dict:
    """Environment for a `labs` subprocess: its own home and workspace, this source tree's code."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("GAPLABS_") and key != "PYTEST_CURRENT_TEST"}
    env.update({"GAPLABS_HOME": str(home / ".gaplabs"), "GAPLABS_WORKSPACE": str(home / "gaplabs"),
                "PYTHONPATH": str(pythonpath), "PYTHONUNBUFFERED": "1", "COLUMNS": "200"})
    if labs_path is not None:
        env["GAPLABS_LABS_PATH"] = str(labs_path)
    if cwd is not None:
        env["PWD"] = str(cwd)
    return env


def labs_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "cli", *args]


@dataclass
class CliRun:
    """What an observer of one `labs` command sees."""

    args: list[str]
    returncode: int
    stdout: str
    stderr: str
    duration_s: float
    marker: str
    report_path: Path | None = None
    report: dict | None = None
    report_error: str | None = None
    leftover: list[str] = field(default_factory=list)

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    @property
    def traceback(self) -> bool:
        return "Traceback (most recent call last)" in self.output

    def describe(self) -> str:
        return (f"labs {' '.join(self.args)}\nexit {self.returncode} after {self.duration_s:.1f} s\n"
                f"--- stdout\n{self.stdout[-3000:]}\n--- stderr\n{self.stderr[-3000:]}\n"
                f"--- report error: {self.report_error}\n--- leftover: {self.leftover}")


def run_labs(args: list[str], *, cwd: Path, env: dict, marker: str | None = None, timeout: float = 300) -> CliRun:
    """Run `labs ARGS` to completion; nothing here raises for what the command did."""
    marker = marker or new_marker()
    started = time.monotonic()
    done = subprocess.run(labs_command(*args), cwd=cwd, env=env, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
    run = CliRun(args=list(args), returncode=done.returncode, stdout=done.stdout.decode("utf-8", "replace"),
                 stderr=done.stderr.decode("utf-8", "replace"), duration_s=time.monotonic() - started, marker=marker)
    return run


def grade_cli(notebook: Path | None, workdir: Path, *, lab_id: str = LAB_ID, labs_path: Path | None = None,
              pythonpath: Path = ROOT, extra: tuple[str, ...] = (), marker: str | None = None,
              timeout: float = 300) -> CliRun:
    """`labs grade` as CI runs it, from `workdir`, with the JSON report at WORKDIR/MARKER/report.json.

    The marker in the report path puts it on the command line of the grader and of every process
    forked from it, so `leftover` lists anything of this run that outlived it. `notebook=None`
    grades the workspace copy (and records the attempt in the progress store).
    """
    marker = marker or new_marker()
    report_path = workdir / marker / "report.json"
    report_path.parent.mkdir(parents=True, exist_ok=True)
    args = ["grade", lab_id, "--device", "cpu", "--json", str(report_path), *extra]
    if notebook is not None:
        args += ["--submission", str(notebook)]
    env = cli_env(workdir / "home", labs_path=labs_path, pythonpath=pythonpath, cwd=workdir)
    run = run_labs(args, cwd=workdir, env=env, marker=marker, timeout=timeout)
    run.report_path = report_path
    try:
        run.report = json.loads(report_path.read_text())
    except (OSError, ValueError) as exc:
        run.report_error = f"{type(exc).__name__}: {exc}"
    run.leftover = leftovers(marker)
    kill_marked(marker)
    return run


# -- what every attack must leave behind --------------------------------------------------------
def report_problems(data: object, *, lab_id: str = LAB_ID) -> list[str]:
    """Why `data` is not a whole report of docs/check-api.md (empty list: it is one)."""
    if not isinstance(data, dict):
        return [f"the report is a {type(data).__name__}, not an object"]
    problems = []
    missing = REPORT_KEYS - set(data)
    if missing:
        problems.append(f"keys missing: {sorted(missing)}")
        return problems
    if data["lab"] != lab_id:
        problems.append(f"lab is {data['lab']!r}")
    checks = data["checks"]
    if not isinstance(checks, list) or not checks:
        return problems + ["no checks"]
    for check in checks:
        if not isinstance(check, dict) or CHECK_KEYS - set(check):
            problems.append(f"a check lacks keys: {check!r:.200}")
            continue
        if check["status"] not in STATUSES:
            problems.append(f"check {check['id']} has status {check['status']!r}")
        if check["points"] not in (0, 0.0, check["max_points"]):
            problems.append(f"check {check['id']} has {check['points']} of {check['max_points']} points")
        if check["points"] and check["status"] != "passed":
            problems.append(f"check {check['id']} earned points with status {check['status']}")
    if abs(sum(check["points"] for check in checks) - data["score"]) > 1e-6:
        problems.append(f"score {data['score']} is not the sum of the checks' points")
    if data["passed"] and data["score"] < data["max_score"]:
        problems.append("passed although the score is below max_score")
    return problems


def statuses(data: dict) -> dict[str, str]:
    return {check["id"]: check["status"] for check in data["checks"]}


# -- the ledger (figures for docs/adversarial.md) -----------------------------------------------
def record(kind: str, name: str, **observed: object) -> None:
    """Append one observation to the ledger, when bench/adversarial_report.py asked for one."""
    path = os.environ.get(LEDGER_ENV)
    if not path:
        return
    with open(path, "a") as handle:
        handle.write(json.dumps({"kind": kind, "name": name, **observed}, default=str) + "\n")
