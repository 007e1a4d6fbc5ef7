"""The student commands of `labs`: list, gaps, start, run, status, hint, reset, watch, solution."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook
from typer.testing import CliRunner

from cli import app
from grader import watch
from grader.runner import run_notebook
from grader.store import ProgressStore
from grader.workspace import notebook_path, workspace_root

DEMO_YAML = """\
id: demo-lab
title: Demo lab for the student workflow
summary: Add two numbers with a shipped helper.
version: 1.0.0
gaps: ["013", "092"]
topics: [testing, Arithmetic]
difficulty: intro
minutes: 5
devices: [cpu]
limits:
  wall_time_s: 60
  call_timeout_s: 10
hints:
  - First hint.
  - Second hint.
  - Third hint.
checks:
  - id: add
    title: add(a, b) adds
    points: 2
"""

QUIET_YAML = """\
id: quiet-lab
title: A lab without hints or solution
summary: Nothing to see.
version: 0.1.0
gaps: ["001"]
topics: [other]
difficulty: advanced
minutes: 90
devices: [cpu, cuda]
checks:
  - id: nothing
    title: nothing
    points: 1
"""

CHECK = '''\
def test_add(submission):
    got = submission.add(2, 3)
    assert got == 5, f"expected add(2, 3) == 5, got {got!r}; likely cause: add does not return a + b"
'''

STARTER_CELLS = ["# Demo lab", "from helper import VALUE", "def add(a, b):\n    raise NotImplementedError('write add')"]
SOLUTION_CELLS = ["from helper import VALUE", "def add(a, b):\n    ### BEGIN SOLUTION\n    return a + b\n    ### END SOLUTION"]


def _notebook(cells: list[str]) -> nbformat.NotebookNode:
    return new_notebook(cells=[new_markdown_cell(c) if c.startswith("# ") else new_code_cell(c) for c in cells])


def make_demo_pack(root: Path) -> Path:
    """A pack root with demo-lab (starter, public files, check, solution, 3 hints) and quiet-lab."""
    lab = root / "labs" / "demo-lab"
    (lab / "checks").mkdir(parents=True)
    (lab / "public").mkdir()
    (lab / "lab.yaml").write_text(DEMO_YAML)
    (lab / "checks" / "test_add.py").write_text(CHECK)
    (lab / "public" / "helper.py").write_text("VALUE = 41\n")
    nbformat.write(_notebook(STARTER_CELLS), lab / "starter.ipynb")
    (root / "solutions" / "demo-lab").mkdir(parents=True)
    nbformat.write(_notebook(SOLUTION_CELLS), root / "solutions" / "demo-lab" / "solution.ipynb")
    quiet = root / "labs" / "quiet-lab"
    (quiet / "checks").mkdir(parents=True)
    (quiet / "lab.yaml").write_text(QUIET_YAML)
    (quiet / "checks" / "test_nothing.py").write_text("def test_nothing():\n    assert False, 'never passes'\n")
    nbformat.write(_notebook(["x = 1"]), quiet / "starter.ipynb")
    return root


@pytest.fixture
def pack(tmp_path, monkeypatch) -> Path:
    root = make_demo_pack(tmp_path / "pack")
    monkeypatch.setenv("GAPLABS_LABS_PATH", str(root))
    monkeypatch.setenv("COLUMNS", "200")  # rich wraps long paths at 80 columns; the tests read them whole
    return root


@pytest.fixture
def labs(pack):
    """Invoke `labs ...` in-process; returns the click Result."""
    runner = CliRunner()

    def invoke(*args: str, input: str | None = None):
        return runner.invoke(app, list(args), input=input, catch_exceptions=False)

    return invoke


def ws() -> Path:
    return workspace_root()


def record(score: float, max_score: float = 2.0, lab: str = "demo-lab") -> None:
    report = {"lab": lab, "lab_version": "1.0.0", "submission": "x", "device": "cpu", "score": score,
              "max_score": max_score, "passed": score >= max_score, "duration_s": 1.0, "checks": []}
    ProgressStore(ws()).record_grade(report, "0" * 64)


def set_code(notebook: Path, index: int, source: str) -> None:
    nb = nbformat.read(notebook, as_version=4)
    nb.cells[index].source = source
    nbformat.write(nb, notebook)


# -- list and gaps ----------------------------------------------------------------------------


def test_list_shows_each_lab_with_status_and_best_score(labs):
    result = labs("list")
    assert result.exit_code == 0, result.output
    assert "demo-lab" in result.output and "quiet-lab" in result.output
    assert "Demo lab for the student workflow" in result.output
    assert re.search(r"demo-lab\s+013 092\s+intro\s+5\s+cpu\s+not started\s+-", result.output), result.output


def test_list_json_follows_the_students_progress(labs):
    rows = {row["id"]: row for row in json.loads(labs("list", "--json").output)}
    assert rows["demo-lab"]["status"] == "not started" and rows["demo-lab"]["best_score"] is None
    assert rows["demo-lab"]["gaps"] == ["013", "092"] and rows["demo-lab"]["devices"] == ["cpu"]

    labs("start", "demo-lab", "--no-jupyter")
    record(1)
    rows = {row["id"]: row for row in json.loads(labs("list", "--json").output)}
    assert rows["demo-lab"]["status"] == "in progress"
    assert (rows["demo-lab"]["best_score"], rows["demo-lab"]["max_score"], rows["demo-lab"]["best"]) == (1, 2, "1/2")

    record(2)
    rows = {row["id"]: row for row in json.loads(labs("list", "--json").output)}
    assert rows["demo-lab"]["status"] == "passed" and rows["demo-lab"]["attempts"] == 2
    assert rows["quiet-lab"]["status"] == "not started"
    assert re.search(r"demo-lab.*passed\s+2/2", labs("list").output)


def test_list_filters_by_topic_and_gap(labs):
    def ids(*args):  # the bundled labs are listed too; these tests own only the two demo labs
        return {row["id"] for row in json.loads(labs("list", "--json", *args).output)} & {"demo-lab", "quiet-lab"}

    assert ids("--topic", "arithmetic") == {"demo-lab"}, "topics match without regard to case"
    assert ids("--topic", "other") == {"quiet-lab"}
    assert ids("--gap", "92") == {"demo-lab"}, "a gap id without leading zeros is accepted"
    assert ids("--gap", "001") == {"quiet-lab"}
    assert ids("--gap", "050") == set()
    assert "No labs match" in labs("list", "--topic", "no-such-topic").output


def test_list_on_a_fresh_machine_creates_no_folders(labs):
    assert labs("list").exit_code == 0 and labs("status").exit_code == 0
    assert not ws().exists(), "only start, hint, grade and the like may create the workspace"


def test_list_rejects_a_gap_id_outside_the_catalog(labs):
    result = labs("list", "--gap", "101")
    assert result.exit_code == 2
    assert "not a gap id" in result.output and "labs gaps" in result.output


def test_gaps_reports_coverage_of_all_100_gap_ids(labs):
    data = json.loads(labs("gaps", "--json").output)
    assert data["total"] == 100 and len(data["gaps"]) == 100
    by_id = {gap["id"]: gap for gap in data["gaps"]}
    assert "demo-lab" in by_id["013"]["labs"] and "demo-lab" in by_id["092"]["labs"]
    assert "quiet-lab" in by_id["001"]["labs"]
    assert by_id["013"]["name"] == "memory math" and by_id["013"]["area"] == "Accelerators"
    assert data["covered"] == sum(1 for gap in data["gaps"] if gap["labs"]) >= 3

    missing = json.loads(labs("gaps", "--json", "--missing").output)
    assert len(missing["gaps"]) == 100 - data["covered"]
    assert all(not gap["labs"] for gap in missing["gaps"])

    table = labs("list", "--gaps").output
    assert f"{data['covered']} of 100 gaps covered" in table and "memory math" in table


# -- start, reset ----------------------------------------------------------------------------


def test_start_without_jupyter_prepares_the_copy_and_says_what_next(labs, pack):
    result = labs("start", "demo-lab", "--no-jupyter")
    assert result.exit_code == 0, result.output
    notebook = notebook_path("demo-lab", ws())
    assert notebook.read_bytes() == (pack / "labs" / "demo-lab" / "starter.ipynb").read_bytes()
    assert (notebook.parent / "helper.py").read_text() == "VALUE = 41\n"
    assert f"Created your copy: {notebook}" in result.output
    for command in ("labs run demo-lab", "labs grade demo-lab", "labs hint demo-lab"):
        assert command in result.output


def test_start_on_an_existing_copy_keeps_the_students_edits(labs):
    labs("start", "demo-lab", "--no-jupyter")
    notebook = notebook_path("demo-lab", ws())
    set_code(notebook, 2, "def add(a, b):\n    return a + b  # my own work")
    edited = notebook.read_bytes()
    result = labs("start", "demo-lab", "--no-jupyter")
    assert result.exit_code == 0 and "Resuming your copy" in result.output
    assert notebook.read_bytes() == edited


def test_start_honours_the_workspace_option(labs, tmp_path):
    labs("start", "demo-lab", "--no-jupyter", "--workspace", str(tmp_path / "elsewhere"))
    assert (tmp_path / "elsewhere" / "demo-lab" / "demo-lab.ipynb").exists()
    assert not notebook_path("demo-lab", ws()).exists()


def test_an_unknown_lab_gets_a_did_you_mean(labs):
    for command in ("start", "run", "hint", "reset", "watch", "solution"):
        result = labs(command, "demo-lb")
        assert result.exit_code == 2, (command, result.output)
        assert "no lab named 'demo-lb'" in result.output and "did you mean 'demo-lab'" in result.output


def test_reset_leaves_a_readable_backup_and_restores_the_starter(labs, pack):
    labs("start", "demo-lab", "--no-jupyter")
    notebook = notebook_path("demo-lab", ws())
    set_code(notebook, 2, "def add(a, b):\n    return a + b  # keep me")
    result = labs("reset", "demo-lab", "--yes")
    assert result.exit_code == 0, result.output
    [backup] = (notebook.parent / "backups").iterdir()
    assert re.fullmatch(r"demo-lab-\d{8}T\d{6}Z\.ipynb", backup.name)
    assert nbformat.read(backup, as_version=4).cells[2].source.endswith("# keep me")
    assert notebook.read_bytes() == (pack / "labs" / "demo-lab" / "starter.ipynb").read_bytes()
    assert str(backup) in result.output


def test_reset_asks_first_and_a_no_changes_nothing(labs):
    labs("start", "demo-lab", "--no-jupyter")
    notebook = notebook_path("demo-lab", ws())
    set_code(notebook, 2, "mine = True")
    edited = notebook.read_bytes()
    result = labs("reset", "demo-lab", input="n\n")
    assert result.exit_code == 1 and "backed up first" in result.output
    assert notebook.read_bytes() == edited and not (notebook.parent / "backups").exists()
    result = labs("reset", "demo-lab", input="y\n")
    assert result.exit_code == 0 and len(list((notebook.parent / "backups").iterdir())) == 1


def test_reset_without_a_copy_just_creates_one(labs):
    result = labs("reset", "demo-lab")
    assert result.exit_code == 0 and "created a fresh one" in result.output
    assert notebook_path("demo-lab", ws()).exists()


# -- hints and solution ----------------------------------------------------------------------


def test_hints_come_one_at_a_time_in_order_and_are_counted(labs):
    first = labs("hint", "demo-lab")
    assert first.exit_code == 0 and "First hint." in first.output and "hint 1 of 3" in first.output
    assert "Second hint." not in first.output
    assert ProgressStore(ws()).hints_used("demo-lab") == 1

    skipped = labs("hint", "demo-lab", "3")
    assert skipped.exit_code == 2 and "next one is hint 2" in skipped.output
    assert ProgressStore(ws()).hints_used("demo-lab") == 1

    assert "Second hint." in labs("hint", "demo-lab").output
    assert "First hint." in labs("hint", "demo-lab", "1").output, "a seen hint can be shown again"
    assert "Third hint." in labs("hint", "demo-lab").output
    assert ProgressStore(ws()).hints_used("demo-lab") == 3
    done = labs("hint", "demo-lab")
    assert done.exit_code == 0 and "seen all 3 hints" in done.output
    assert "shows hint" not in labs("hint", "demo-lab", "1").output, "no 4th hint is promised"
    assert labs("hint", "demo-lab", "4").exit_code == 2
    rows = {row["id"]: row for row in json.loads(labs("list", "--json").output)}
    assert rows["demo-lab"]["hints_used"] == 3


def test_a_lab_without_hints_says_so(labs):
    result = labs("hint", "quiet-lab")
    assert result.exit_code == 0 and "no hints" in result.output


def test_solution_is_locked_until_the_lab_is_passed(labs):
    locked = labs("solution", "demo-lab")
    assert locked.exit_code == 2 and "unlocks once you pass" in locked.output and "--force" in locked.output
    record(1)
    locked = labs("solution", "demo-lab")
    assert locked.exit_code == 2 and "your best is 1/2" in locked.output
    assert ProgressStore(ws()).solution_views("demo-lab") == []

    record(2)
    shown = labs("solution", "demo-lab")
    assert shown.exit_code == 0 and "return a + b" in shown.output
    assert [forced for _, forced in ProgressStore(ws()).solution_views("demo-lab")] == [False]


def test_forcing_the_solution_is_recorded(labs):
    shown = labs("solution", "demo-lab", "--force")
    assert shown.exit_code == 0 and "return a + b" in shown.output
    assert [forced for _, forced in ProgressStore(ws()).solution_views("demo-lab")] == [True]


def test_a_lab_shipped_without_solution_says_where_it_looked(labs):
    result = labs("solution", "quiet-lab", "--force")
    assert result.exit_code == 2 and "without its solution" in result.output


# -- status ----------------------------------------------------------------------------------


def test_status_shows_progress_across_the_catalog(labs):
    record(2)
    labs("hint", "demo-lab")
    data = json.loads(labs("status", "--json").output)
    rows = {row["id"]: row for row in data["labs"]}
    assert data["passed"] >= 1 and data["total"] == len(data["labs"])
    assert rows["demo-lab"]["status"] == "passed" and rows["demo-lab"]["hints_used"] == 1
    table = labs("status").output
    assert re.search(rf"{data['passed']}/{data['total']} labs passed", table)
    assert re.search(r"demo-lab\s.*passed\s.*2/2\s.*1\s.*1/3", table), table
    assert re.search(r"quiet-lab\s.*not started\s.*-\s.*0\s.*0/0", table), table


# -- run -------------------------------------------------------------------------------------


def test_run_executes_the_notebook_and_saves_outputs_without_touching_sources(labs):
    labs("start", "demo-lab", "--no-jupyter")
    notebook = notebook_path("demo-lab", ws())
    set_code(notebook, 2, "def add(a, b):\n    return a + b\nprint('sum', add(VALUE, 1))")
    sources = [cell.source for cell in nbformat.read(notebook, as_version=4).cells]
    result = labs("run", "demo-lab")
    assert result.exit_code == 0, result.output
    assert "All 2 code cells ran" in result.output
    saved = nbformat.read(notebook, as_version=4)
    assert [cell.source for cell in saved.cells] == sources
    assert saved.cells[2].outputs[0]["text"] == "sum 42\n", "the kernel runs in the lab folder, so helper.py imports"
    assert saved.cells[2].execution_count == 2


def test_run_points_at_the_failing_cell_and_stops_there(labs):
    labs("start", "demo-lab", "--no-jupyter")
    notebook = notebook_path("demo-lab", ws())
    nb = nbformat.read(notebook, as_version=4)
    nb.cells.append(new_code_cell("add(1, 2)"))
    nb.cells.append(new_code_cell("never_run = True"))
    nbformat.write(nb, notebook)
    result = labs("run", "demo-lab")
    assert result.exit_code == 1
    assert "cell 4 (starts with: 'add(1, 2)') raised NotImplementedError: write add" in result.output
    assert "----> 2     raise NotImplementedError" in result.output, "the traceback shows the student's line"
    assert "\x1b[" not in result.output, "colour codes from the kernel are removed"
    saved = nbformat.read(notebook, as_version=4)
    assert saved.cells[3].outputs[0]["output_type"] == "error"
    assert saved.cells[4].execution_count is None, "cells after the failure do not run"


def test_run_stops_a_cell_that_runs_past_the_timeout(labs):
    labs("start", "demo-lab", "--no-jupyter")
    notebook = notebook_path("demo-lab", ws())
    set_code(notebook, 2, "import time\ntime.sleep(60)")
    started = time.monotonic()
    result = labs("run", "demo-lab", "--timeout", "2", "--no-save")
    assert result.exit_code == 1
    assert "ran past the time limit" in result.output and "--timeout" in result.output
    assert time.monotonic() - started < 45
    assert nbformat.read(notebook, as_version=4).cells[1].outputs == [], "--no-save leaves the file alone"


def test_run_refuses_to_save_over_an_edit_made_during_the_run(labs):
    labs("start", "demo-lab", "--no-jupyter")
    notebook = notebook_path("demo-lab", ws())

    def student_saves(position, total, index, line):
        if position == 1:
            set_code(notebook, 2, "def add(a, b):\n    return a + b  # saved while running")

    result = run_notebook(notebook, cell_timeout_s=60, on_cell_start=student_saves)
    assert not result.saved and "changed on disk" in result.not_saved_reason
    assert nbformat.read(notebook, as_version=4).cells[2].source.endswith("# saved while running")


def test_run_without_a_copy_says_to_start_first(labs):
    result = labs("run", "demo-lab")
    assert result.exit_code == 2 and "labs start demo-lab" in result.output


# -- watch -----------------------------------------------------------------------------------


class FakeClock:
    """Time that moves only when the watch loop sleeps; `events` change the file at given times."""

    def __init__(self, path: Path, events: dict[float, str]):
        self.path, self.events, self.now = path, dict(events), 0.0

    def sleep(self, seconds: float) -> None:
        self.now = round(self.now + seconds, 6)
        for at in sorted(t for t in self.events if t <= self.now):
            text = self.events.pop(at)
            if text == "delete":
                self.path.unlink()
                continue
            self.path.write_text(text)
            nanoseconds = int(at * 1e9) + 1_000_000_000  # distinct mtimes however fast the writes
            os.utime(self.path, ns=(nanoseconds, nanoseconds))


def test_watch_grades_once_per_burst_of_saves(tmp_path):
    path = tmp_path / "nb.ipynb"
    path.write_text("v0")
    clock = FakeClock(path, {1.0: "v1", 1.2: "v1 again", 1.4: "v1 final", 4.0: "v2"})
    graded = []
    calls = watch.watch_file(path, lambda: graded.append((clock.now, path.read_text())),
                             should_stop=lambda: clock.now >= 8, poll_s=0.1, debounce_s=0.5,
                             sleep=clock.sleep, clock=lambda: clock.now)
    assert [text for _, text in graded] == ["v0", "v1 final", "v2"]
    assert calls == 3
    assert 1.9 <= graded[1][0] <= 2.1, "graded once the saves stopped for the debounce time"


def test_a_save_made_while_a_grade_runs_gets_its_own_grade(tmp_path):
    path = tmp_path / "nb.ipynb"
    path.write_text("v0")
    clock = FakeClock(path, {})
    graded = []

    def slow_grade():
        graded.append(path.read_text())
        if len(graded) == 1:  # the student saves again while this grade is still running
            clock.events[clock.now + 0.01] = "v1"
            clock.sleep(2.0)

    watch.watch_file(path, slow_grade, should_stop=lambda: clock.now >= 6, poll_s=0.1, debounce_s=0.3,
                     sleep=clock.sleep, clock=lambda: clock.now)
    assert graded == ["v0", "v1"]


def test_watch_waits_out_a_missing_file_and_survives_a_failing_grade(tmp_path):
    path = tmp_path / "nb.ipynb"
    path.write_text("v0")
    clock = FakeClock(path, {1.0: "delete", 2.0: "back"})
    errors, seen = [], []

    def grade():
        seen.append(path.read_text())
        raise RuntimeError("engine broke")

    watch.watch_file(path, grade, should_stop=lambda: clock.now >= 5, poll_s=0.1, debounce_s=0.3,
                     run_first=False, on_error=errors.append, sleep=clock.sleep, clock=lambda: clock.now)
    assert seen == ["back"], "no grade for the starting state or while the file is missing"
    assert [str(e) for e in errors] == ["engine broke"]
    with pytest.raises(RuntimeError):
        watch.watch_file(path, grade, should_stop=lambda: True)


def test_watch_grades_for_real_and_records_each_grade(labs, pack):
    from rich.console import Console

    from grader.registry import find_lab

    labs("start", "demo-lab", "--no-jupyter")
    notebook = notebook_path("demo-lab", ws())
    set_code(notebook, 2, "def add(a, b):\n    return a + b")
    store = ProgressStore(ws())
    console = Console(record=True, width=200)
    watch.watch_and_grade(find_lab("demo-lab"), notebook, ws(), device="cpu", console=console,
                          should_stop=lambda: len(store.attempts("demo-lab")) >= 1, poll_s=0.05)
    [attempt] = store.attempts("demo-lab")
    assert (attempt.score, attempt.max_score, attempt.passed) == (2, 2, True)
    assert "score 2/2" in console.export_text()
    assert json.loads(labs("list", "--json").output)[0]["id"]  # list still reads the store afterwards


def test_watch_command_stops_cleanly_on_ctrl_c(labs, monkeypatch):
    labs("start", "demo-lab", "--no-jupyter")

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(watch, "watch_file", interrupted)
    result = labs("watch", "demo-lab")
    assert result.exit_code == 0 and "Stopped watching" in result.output


def test_watch_stops_at_once_on_a_mistake_no_save_can_fix(labs):
    labs("start", "demo-lab", "--no-jupyter")
    result = labs("watch", "demo-lab", "--device", "cuda")  # demo-lab is CPU only; no GPU is needed to see it
    assert result.exit_code == 2 and "cuda" in result.output
    assert ProgressStore(ws()).attempts("demo-lab") == []


def test_watch_without_a_copy_says_to_start_first(labs):
    result = labs("watch", "demo-lab")
    assert result.exit_code == 2 and "labs start demo-lab" in result.output


# -- help, version, completion ---------------------------------------------------------------


@pytest.mark.parametrize("command", ["list", "gaps", "start", "run", "status", "hint", "reset", "watch", "solution"])
def test_every_command_has_help(labs, command):
    result = labs(command, "--help")
    assert result.exit_code == 0 and "Usage" in result.output
    assert len(result.output.strip().splitlines()) > 5


def test_the_student_commands_import_no_heavy_modules():
    """`labs list` and `labs --help` must stay instant: notebook and kernel libraries load only when used."""
    import subprocess
    import sys

    code = "import sys, grader.cli_student; print(sorted(m for m in ('nbformat', 'nbclient', 'zmq', 'torch') if m in sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "[]", f"importing grader.cli_student loaded {loaded}"


def test_version_and_lab_id_completion(labs):
    from grader import __version__
    from grader.cli_student import _complete_lab_id

    assert __version__ in labs("--version").output
    assert "demo-lab" in _complete_lab_id("dem")
    assert "quiet-lab" not in _complete_lab_id("dem")
