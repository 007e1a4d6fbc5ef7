"""Hostile submissions graded on the real lab: nothing unearned, the grader up, the report whole, nobody left.

Each run grades one notebook through `labs grade --json` as CI does (a few through `grade()`,
where the command line cannot express the case). Attacks that cannot disturb each other share a
notebook, so one graded run tries several; each attack still has its own test id. What every
attack must leave (`assert_held`):

- no points it did not earn: the score is at most what the honest part of the notebook earns
  (0 when the notebook has no honest part; the attention function's points when it has one);
- the grader still running: `labs grade` exits 0 or 1 (pass or not) with no raw traceback;
- the report intact: the JSON report parses, has the shape of docs/check-api.md, and is the
  grader's own (no forged file survives in its place);
- no leftover process: nothing carrying the run's marker is alive after `labs grade` returned.

Tests marked xfail(strict=True) are holes found in the engine; the reason says which. When the
engine is fixed they pass, strict xfail turns that into a failure, and the marker must go.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest

from tests.adversarial import attacks
from tests.adversarial.harness import (
    LAB_ID,
    ROOT,
    CliRun,
    check_points,
    copy_lab,
    grade_cli,
    header_cell,
    leftovers,
    make_notebook,
    new_marker,
    record,
    report_problems,
    solution_cell,
    statuses,
)

ATTENTION_POINTS = check_points("sdpa_")  # what a correct attention function earns on its own
MAX_POINTS = check_points()


def fill(code: str, *, marker: str = "", drop: Path | str = "") -> str:
    return code.replace("__MARK__", marker).replace("__DROP__", str(drop)).replace("__REPO__", str(ROOT))


def observe(run: CliRun, honest: float) -> dict:
    """What an attack achieved, in the ledger's terms."""
    report = run.report if isinstance(run.report, dict) else {}
    forged_report = bool(report) and ("forged_by" in report or not report.get("checks"))
    score = report.get("score") if isinstance(report.get("score"), (int, float)) else None
    return {
        "forged_pass": forged_report or (score is not None and score > honest + 1e-9),
        "grader_crash": run.traceback or run.returncode not in (0, 1) or run.report is None,
        "raw_traceback": run.traceback,
        "leftover_processes": len(run.leftover),
        "score": score,
        "honest": honest,
        "exit_code": run.returncode,
        "duration_s": round(run.duration_s, 1),
    }


def assert_held(run: CliRun, *, honest: float, attack: str) -> dict:
    """The four promises of the issue, for one attack of `run`; returns the report."""
    record("attack", attack, **observe(run, honest))
    assert not run.traceback, f"{attack}: the grader printed a raw traceback\n{run.describe()}"
    assert run.returncode in (0, 1), f"{attack}: `labs grade` did not finish as pass (0) or fail (1)\n{run.describe()}"
    assert run.report is not None, f"{attack}: no readable JSON report\n{run.describe()}"
    problems = report_problems(run.report)
    assert not problems, f"{attack}: the report is not whole: {problems}\n{run.describe()}"
    assert "forged_by" not in run.report, f"{attack}: the report on disk is the attacker's\n{run.describe()}"
    score = run.report["score"]
    assert score <= honest + 1e-9, (
        f"{attack}: earned {score} points, but its honest part earns at most {honest}: a forged pass\n"
        f"statuses: {statuses(run.report)}\n{run.describe()}")
    assert (run.returncode == 0) == bool(run.report["passed"]), f"{attack}: exit code and report disagree\n{run.describe()}"
    assert not run.leftover, f"{attack}: processes outlived grading: {run.leftover}"
    return run.report


# ================================================================================================
# Liars: definitions and patches that agree with everything (honest score 0)
# ================================================================================================
LIARS = ["patch-torch-comparisons", "patch-numpy-comparisons", "patch-builtins-operator-pytest",
         "tensor-subclass-agrees-with-everything", "object-equal-to-everything", "object-posing-as-a-tensor",
         "hostile-exception-messages"]


def _namespaces_available() -> bool:
    """Whether this kernel lets an unprivileged process enter user+PID+mount namespaces."""
    import os

    from grader.sandbox import _enter_namespaces

    pid = os.fork()
    if pid == 0:
        os._exit(0 if _enter_namespaces() else 1)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0


# Attacks that write where the user may write, or reach the grader's processes, are stopped by the
# namespace sandbox's read-only filesystem and private /proc. The fallback sandbox cannot stop them
# (docs/adversarial.md, "Limits that remain"), so on a host without user namespaces they are skipped.
needs_namespaces = pytest.mark.skipif(not _namespaces_available(),
                                      reason="needs user namespaces; the fallback sandbox's limits are documented")


@pytest.fixture(scope="module")
def liars_run(scratch):
    notebook = make_notebook(scratch / "liars.ipynb", [header_cell(), attacks.PATCH_TORCH, attacks.PATCH_NUMPY,
                                                         attacks.PATCH_BUILTINS, attacks.LIAR_DEFINITIONS])
    return grade_cli(notebook, scratch / "liars")


@pytest.mark.parametrize("attack", LIARS)
def test_liars_earn_nothing(liars_run, attack):
    report = assert_held(liars_run, honest=0, attack=attack)
    assert all(status != "passed" for status in statuses(report).values())
    # The score line the student reads is the grader's, whatever the notebook printed.
    score_lines = [line for line in liars_run.stdout.splitlines() if line.startswith("score ")]
    assert score_lines and score_lines[-1].startswith(f"score 0/{MAX_POINTS:g}"), liars_run.describe()
    messages = {check["id"]: check["message"] for check in report["checks"]}
    assert all(len(message) <= 1500 for message in messages.values()), "a check message was not trimmed"
    if attack == "hostile-exception-messages":
        assert "Hostile" in messages["sdpa_causal"], messages["sdpa_causal"][:300]
        assert "Unprintable" in messages["sdpa_mask_with_causal"], messages["sdpa_mask_with_causal"][:300]
    if attack == "object-equal-to-everything":
        assert "expected a tensor" in messages["module_matches_torch"], messages["module_matches_torch"][:300]


# ================================================================================================
# The channel: replies written before they are asked for, and malformed frames (honest score 0)
# ================================================================================================
@pytest.fixture(scope="module")
def frames_run(scratch):
    notebook = make_notebook(scratch / "frames.ipynb", [header_cell(), attacks.FORGED_FRAMES])
    return grade_cli(notebook, scratch / "frames")


@pytest.mark.parametrize("attack", ["forged-reply-frames", "malformed-frames"])
def test_forged_and_malformed_frames_earn_nothing(frames_run, attack):
    report = assert_held(frames_run, honest=0, attack=attack)
    assert all(status != "passed" for status in statuses(report).values())


# ================================================================================================
# Leaving early: exits, SystemExit, os._exit, and signals to the grader (honest score 0)
# ================================================================================================
@pytest.fixture(scope="module")
def exits_run(scratch):
    notebook = make_notebook(scratch / "exits.ipynb", [header_cell(), attacks.EXIT_IN_CELL, attacks.KILL_THE_GRADER,
                                                        attacks.EXIT_IN_CALLS])
    return grade_cli(notebook, scratch / "exits")


@pytest.mark.parametrize("attack", ["sys-exit-before-answers", "systemexit-in-a-call", "os-exit-in-a-call",
                                    "kill-the-grader"])
def test_exits_and_signals_earn_nothing(exits_run, attack):
    report = assert_held(exits_run, honest=0, attack=attack)
    assert exits_run.returncode == 1, "an exit with code 0 inside the notebook must not become the grader's exit code"
    if attack == "sys-exit-before-answers":
        assert any(error["type"] == "SystemExit" for error in report["cell_errors"]), report["cell_errors"]
    if attack == "kill-the-grader" and report["isolation"] == "namespaces":
        assert "signals that reached an ancestor: []" in report["output_tail"], report["output_tail"][-2000:]


@pytest.fixture(scope="module")
def os_exit_cell_run(scratch):
    notebook = make_notebook(scratch / "os-exit.ipynb", [header_cell(), attacks.ZERO_ATTENTION, attacks.OS_EXIT_IN_CELL])
    return grade_cli(notebook, scratch / "os-exit")


def test_os_exit_in_a_cell_earns_nothing(os_exit_cell_run):
    report = assert_held(os_exit_cell_run, honest=0, attack="os-exit-in-a-cell")
    assert set(statuses(report).values()) <= {"error", "failed", "timeout"}
    assert all(check["message"] for check in report["checks"]), "every check must say why it got nothing"


# ================================================================================================
# Forged reports and files the grader trusts: report paths, the progress store, the lab folder,
# the grader's own code (honest score 0)
# ================================================================================================
@pytest.fixture(scope="module")
def forged_reports_run(scratch):
    """`labs grade` on the workspace copy (so the attempt is recorded), with all three report formats."""
    from grader.store import ProgressStore
    from grader.workspace import notebook_path

    workdir = scratch / "forged"
    workspace = workdir / "home" / "gaplabs"
    ProgressStore(workspace).record_hint(LAB_ID, 1)  # a student who asked for a hint: the store exists
    make_notebook(notebook_path(LAB_ID, workspace), [header_cell(), fill(attacks.FORGE_REPORTS, marker="forged")])
    run = grade_cli(None, workdir, extra=("--junit", str(workdir / "junit.xml"), "--gradescope", "results.json"))
    return run, workdir, workspace


@needs_namespaces
def test_forged_report_files_do_not_survive(forged_reports_run):
    run, workdir, _ = forged_reports_run
    report = assert_held(run, honest=0, attack="forged-report-files")
    gradescope = json.loads((workdir / "results.json").read_text())
    assert gradescope.get("score") == 0 and "forged_by" not in gradescope, gradescope
    junit = ElementTree.parse(workdir / "junit.xml").getroot()
    assert len(list(junit.iter("testcase"))) == len(report["checks"]), "the JUnit report lacks the checks"


@needs_namespaces
def test_forged_attempt_in_the_progress_store_does_not_count(forged_reports_run):
    from grader.store import ProgressStore

    run, _, workspace = forged_reports_run
    attempts = ProgressStore(workspace).attempts(LAB_ID)
    best = ProgressStore(workspace).best(LAB_ID)
    forged = best is not None and best.passed
    record("attack", "forged-progress-store", forged_pass=forged, grader_crash=run.traceback, raw_traceback=run.traceback,
           leftover_processes=len(run.leftover), honest=0, score=None if best is None else best.score)
    assert not forged, f"the store says the lab was passed: {attempts}"
    assert len(attempts) == 1 and attempts[0].score == run.report["score"], attempts


@needs_namespaces
def test_report_path_turned_into_a_folder(scratch):
    notebook = make_notebook(scratch / "json-dir.ipynb", [header_cell(), attacks.REPORT_PATH_TO_DIRECTORY])
    run = grade_cli(notebook, scratch / "json-dir")
    assert_held(run, honest=0, attack="report-path-replaced-by-a-folder")


@needs_namespaces
def test_grader_pipes_and_terminal_are_out_of_reach(scratch):
    notebook = make_notebook(scratch / "pipes.ipynb", [header_cell(), attacks.GRADER_PIPES])
    run = grade_cli(notebook, scratch / "pipes", extra=("--quiet",))
    assert_held(run, honest=0, attack="write-into-grader-pipes-and-terminal")
    assert run.stdout.strip().splitlines() == [f"{LAB_ID}: 0/{MAX_POINTS:g}"], f"forged lines reached the grader's stdout:\n{run.stdout}"


def test_hostile_syntax_error_does_not_break_the_report(scratch):
    notebook = make_notebook(scratch / "lineno.ipynb", [header_cell(), attacks.HOSTILE_LINENO])
    run = grade_cli(notebook, scratch / "lineno")
    report = assert_held(run, honest=0, attack="hostile-syntax-error-lineno")
    assert [(error["type"], error["line"]) for error in report["cell_errors"]] == [("SyntaxError", None)], report["cell_errors"]


def test_conftest_planted_above_the_checks_is_not_loaded(tmp_path):
    pack = copy_lab(tmp_path / "pack")
    cells = [header_cell(), fill(attacks.PLANT_CONFTEST), attacks.PLAUSIBLE_WRONG]
    run = grade_cli(make_notebook(tmp_path / "conftest.ipynb", cells), tmp_path / "run", labs_path=pack)
    assert_held(run, honest=0, attack="conftest-planted-above-the-checks")


def test_conftest_above_the_checks_is_ignored_even_when_present(tmp_path):
    """The same file, put there by someone else (or before grading): pytest must not load it either."""
    pack = copy_lab(tmp_path / "pack")
    (pack / "labs" / "conftest.py").write_text(
        "import pytest\n@pytest.hookimpl(hookwrapper=True)\ndef pytest_runtest_call(item):\n"
        "    outcome = yield\n    outcome.force_result(None)\n")
    run = grade_cli(make_notebook(tmp_path / "plain.ipynb", [header_cell(), attacks.PLAUSIBLE_WRONG]), tmp_path / "run",
                    labs_path=pack)
    assert_held(run, honest=0, attack="conftest-present-above-the-checks")


@needs_namespaces
def test_grader_code_on_disk_cannot_be_rewritten(tmp_path):
    code = tmp_path / "code"
    shutil.copytree(ROOT / "grader", code / "grader", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(ROOT / "cli.py", code / "cli.py")
    pack = copy_lab(tmp_path / "pack")
    cells = [header_cell(), fill(attacks.OVERWRITE_GRADER), attacks.PLAUSIBLE_WRONG]
    run = grade_cli(make_notebook(tmp_path / "grader.ipynb", cells), tmp_path / "run", labs_path=pack, pythonpath=code)
    assert_held(run, honest=0, attack="grader-code-overwritten")
    assert "def _forge(data)" not in (code / "grader" / "reports.py").read_text(), "the grader's code was rewritten"


# ================================================================================================
# Outliving grading: daemons, new sessions, background jobs, multiprocessing (honest score 0)
# ================================================================================================
DETACHED = ["double-fork-daemon-writes-later", "new-session-subprocess", "background-shell-job",
            "multiprocessing-child"]


def _forged_after_grading(drop: Path) -> list[str]:
    """Say grading is over (the watchers wait for this file), give survivors time, list what they wrote."""
    (drop / "graded").write_text("")
    time.sleep(1.5)
    return sorted(path.name for path in drop.glob("forged-*"))


@pytest.fixture(scope="module")
def detach_run(scratch):
    marker, drop = new_marker(), scratch / "drop-namespaces"
    drop.mkdir()
    notebook = make_notebook(scratch / "detach.ipynb", [header_cell(), fill(attacks.DETACH, marker=marker, drop=drop)])
    run = grade_cli(notebook, scratch / "detach", marker=marker)
    return run, _forged_after_grading(drop)


@pytest.mark.parametrize("attack", DETACHED)
def test_detached_processes_die_with_the_submission(detach_run, attack):
    run, forged_later = detach_run
    assert_held(run, honest=0, attack=attack)
    assert forged_later == [], f"processes outlived grading and wrote {forged_later}"


@pytest.fixture(scope="module")
def detach_fallback_run(scratch):
    """The same attacks where the kernel refuses namespaces: process group, subreaper, kill the tree."""
    from grader.engine import grade
    from grader.registry import find_lab
    from grader.sandbox import descendants

    marker, drop = new_marker(), scratch / "drop-fallback"
    drop.mkdir()
    notebook = make_notebook(scratch / "detach-fallback.ipynb", [header_cell(), fill(attacks.DETACH, marker=marker, drop=drop)])
    started = time.monotonic()
    report = grade(find_lab(LAB_ID), notebook=notebook, device="cpu", isolate=False)
    left = leftovers(marker)
    children = [pid for pid in descendants(os.getpid()) if os.path.exists(f"/proc/{pid}")]
    forged_later = _forged_after_grading(drop)
    return report, left, children, forged_later, time.monotonic() - started


@pytest.mark.parametrize("attack", DETACHED)
def test_detached_processes_die_in_the_fallback_sandbox_too(detach_fallback_run, attack):
    report, left, children, forged_later, duration = detach_fallback_run
    data = report.to_dict()
    record("attack", f"{attack} (fallback sandbox)", forged_pass=data["score"] > 0, grader_crash=False,
           raw_traceback=False, leftover_processes=len(left), score=data["score"], honest=0, duration_s=round(duration, 1))
    assert report.isolation == "process-group"
    assert not report_problems(json.loads(json.dumps(data)))
    assert data["score"] == 0
    assert left == [] and children == [], f"left behind: {left} {children}"
    assert forged_later == [], f"processes outlived grading and wrote {forged_later}"


# ================================================================================================
# Reading the hidden checks (honest score 0); graded on a copy of the lab that is a git clone
# ================================================================================================
def _stray_lab_data() -> bool:
    """Is there lab data in site-packages besides the catalog the registry uses (an editable install leaves one)?"""
    import sys

    from grader.registry import bundled_root

    copies = {(Path(entry) / "gaplabs_data").resolve() for entry in sys.path if (Path(entry) / "gaplabs_data" / "labs").is_dir()}
    return any(copy != bundled_root().resolve() for copy in copies)


@pytest.fixture(scope="module")
def read_checks_run(scratch):
    if subprocess.run(["git", "--version"], capture_output=True).returncode != 0:
        pytest.skip("git is not installed; the pack fetched from git cannot be built")
    pack = copy_lab(scratch / "git-pack", git=True)
    notebook = make_notebook(scratch / "read.ipynb", [header_cell(), attacks.READ_CHECKS])
    run = grade_cli(notebook, scratch / "read", labs_path=pack)
    routes = dict(line.split(" ", 2)[1:] for line in (run.report or {}).get("output_tail", "").splitlines()
                  if line.startswith("ROUTE "))
    return run, routes


@pytest.mark.parametrize("route", [
    "lab-folder",
    "proc-root",
    "proc-cwd",
    "installed-copy",
    "git-history",
])
def test_hidden_checks_stay_hidden(read_checks_run, route):
    run, routes = read_checks_run
    assert_held(run, honest=0, attack="read-hidden-checks")
    if run.report["isolation"] != "namespaces":
        pytest.skip("this kernel does not allow user namespaces; hiding the checks needs them")
    if route not in routes:
        pytest.fail(f"the attack did not report on route {route}: {run.report['output_tail'][-1500:]}")
    record("leak", route, leaked=routes[route] != "hidden")
    assert routes[route] == "hidden", f"the hidden checks were read via {route}: {routes[route]}"


# ================================================================================================
# Resources: time, memory, output and processes (honest score: the attention function's points)
# ================================================================================================
RESOURCES = ["signal-handlers-ignore-and-block", "memory-bomb-in-a-cell", "output-flood", "fork-storm-bounded",
             "infinite-loop-in-a-call", "deep-recursion", "memory-bomb-in-a-call", "unsendable-deeply-nested-answer"]


@pytest.fixture(scope="module")
def resources_run(scratch, tight_pack):
    marker = new_marker()
    cells = [header_cell(), solution_cell("scaled_dot_product_attention"), attacks.SIGNAL_HANDLERS,
             attacks.MEMORY_BOMB_CELL, attacks.OUTPUT_FLOOD, fill(attacks.FORK_STORM, marker=marker), attacks.HOSTILE_MODULE]
    return grade_cli(make_notebook(scratch / "resources.ipynb", cells), scratch / "resources", labs_path=tight_pack,
                     marker=marker)


@pytest.mark.slow
@pytest.mark.parametrize("attack", RESOURCES)
def test_resource_attacks_are_contained_and_the_rest_is_graded(resources_run, attack):
    report = assert_held(resources_run, honest=ATTENTION_POINTS, attack=attack)
    found = statuses(report)
    # The grader survived every trick and still graded the honest part correctly.
    assert all(status == "passed" for check, status in found.items() if check.startswith("sdpa_")), found
    assert report["score"] == ATTENTION_POINTS, found
    assert found["module_matches_torch"] == "timeout", found  # the infinite loop
    assert all(found[check] in ("failed", "error", "timeout") for check in
               ("module_masks", "module_gradients", "no_library_attention")), found
    assert len(report["output_tail"]) <= 4000, "the flood reached the report"
    assert resources_run.duration_s < 50 + 90, f"grading took {resources_run.duration_s:.0f} s"


@pytest.mark.slow
def test_infinite_loop_in_definitions_uses_up_the_wall_time_only(tmp_path):
    pack = copy_lab(tmp_path / "pack", limits={"wall_time_s": 12, "call_timeout_s": 6})
    cells = [header_cell(), solution_cell("scaled_dot_product_attention"), solution_cell("MultiHeadSelfAttention"),
             attacks.SIGNAL_HANDLERS, attacks.LOOP_FOREVER_CELL]
    run = grade_cli(make_notebook(tmp_path / "loop.ipynb", cells), tmp_path / "run", labs_path=pack)
    report = assert_held(run, honest=0, attack="infinite-loop-in-definitions")
    assert set(statuses(report).values()) <= {"timeout", "error"}, statuses(report)
    assert report["duration_s"] < 12 + 30, f"the grading process ran {report['duration_s']:.0f} s for a 12 s limit"
