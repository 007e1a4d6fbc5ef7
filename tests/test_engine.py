"""The grading engine on the toy lab: correct, wrong, erroring, hanging and crashing submissions."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from grader.engine import grade
from grader.errors import NotebookError
from tests.conftest import make_notebook


def statuses(report) -> dict[str, str]:
    return {check.id: check.status for check in report.checks}


def test_solution_gets_full_marks(toy_lab, toy_notebook):
    report = grade(toy_lab, notebook=toy_notebook(), device="cpu")
    assert statuses(report) == {"softmax_matches_torch": "passed", "scaled_add": "passed", "linear_module": "passed",
                                "helper_constant": "passed", "needs_cuda": "skipped"}
    assert report.score == 6 and report.max_score == 6 and report.passed
    assert any("left out of max_score" in note for note in report.notes)
    assert report.isolation in ("namespaces", "process-group")


def test_wrong_softmax_fails_with_teaching_message(toy_lab, toy_notebook):
    wrong = "def softmax_rows(x):\n    return torch.softmax(x, dim=0)\n"
    report = grade(toy_lab, notebook=toy_notebook(wrong), device="cpu")
    result = {c.id: c for c in report.checks}["softmax_matches_torch"]
    assert result.status == "failed" and result.points == 0
    assert "softmax_rows" in result.message and "normalise over the last dimension" in result.message
    assert statuses(report)["scaled_add"] == "passed"
    assert report.score == 4 and not report.passed


def test_student_exception_is_a_failure_with_their_traceback(toy_lab, toy_notebook):
    raising = "def scaled_add(a, b, s):\n    raise NotImplementedError('return a + s * b')\n"
    report = grade(toy_lab, notebook=toy_notebook(raising), device="cpu")
    result = {c.id: c for c in report.checks}["scaled_add"]
    assert result.status == "failed"
    assert "NotImplementedError: return a + s * b" in result.message
    assert 'File "<cell 6>", line 2, in scaled_add' in result.message  # the student's cell, as Jupyter counts


def test_hanging_call_times_out_and_later_checks_still_run(toy_lab, toy_notebook):
    hanging = "def scaled_add(a, b, s):\n    while True:\n        pass\n"
    started = time.monotonic()
    report = grade(toy_lab, notebook=toy_notebook(hanging), device="cpu")
    assert statuses(report)["scaled_add"] == "timeout"
    assert statuses(report)["linear_module"] == "passed"  # a fresh submission process answered
    assert "no answer within 3 s" in {c.id: c for c in report.checks}["scaled_add"].message
    assert time.monotonic() - started < 30


def test_hanging_cell_uses_up_the_wall_time_not_more(toy_lab, toy_notebook, monkeypatch):
    report = grade(toy_lab, notebook=toy_notebook("import time\nwhile True:\n    time.sleep(0.01)\n"), device="cpu")
    assert report.score == 0
    assert set(statuses(report).values()) <= {"timeout", "error", "skipped"}
    assert report.duration_s < toy_lab.spec.limits.wall_time_s + 15


@pytest.mark.parametrize("crash", [
    "import os\ndef softmax_rows(x):\n    os._exit(3)\n",
    "import ctypes\ndef softmax_rows(x):\n    ctypes.string_at(0)\n",
    "import os, signal\ndef softmax_rows(x):\n    os.kill(os.getpid(), signal.SIGKILL)\n    return x\n",
])
def test_crash_is_an_error_and_other_checks_are_reported(toy_lab, toy_notebook, crash):
    report = grade(toy_lab, notebook=toy_notebook(crash), device="cpu")
    result = {c.id: c for c in report.checks}["softmax_matches_torch"]
    assert result.status in ("error", "failed"), result
    assert result.points == 0
    assert statuses(report)["scaled_add"] == "passed"
    assert statuses(report)["linear_module"] == "passed"


def test_exit_in_a_cell_does_not_stop_grading(toy_lab, toy_notebook):
    report = grade(toy_lab, notebook=toy_notebook("import sys\nsys.exit(0)\n", "x = 1\n"), device="cpu")
    assert report.passed
    assert any(error["type"] == "SystemExit" for error in report.cell_errors)


def test_syntax_error_in_one_cell_is_reported_and_the_rest_runs(toy_lab, toy_notebook):
    report = grade(toy_lab, notebook=toy_notebook(replace={2: "def scaled_add(a, b, s)\n    return a\n"}), device="cpu")
    assert statuses(report)["softmax_matches_torch"] == "passed"
    assert statuses(report)["scaled_add"] == "failed"
    assert "does not define 'scaled_add'" in {c.id: c for c in report.checks}["scaled_add"].message
    error = report.cell_errors[0]
    assert error["type"] == "SyntaxError" and error["cell"] == 3 and error["line"] == 1


def test_memory_bomb_is_stopped(toy_lab, toy_notebook):
    bomb = "def scaled_add(a, b, s):\n    hoard = []\n    while True:\n        hoard.append(bytearray(50 * 2**20))\n"
    report = grade(toy_lab, notebook=toy_notebook(bomb), device="cpu")
    result = {c.id: c for c in report.checks}["scaled_add"]
    assert result.status in ("failed", "error") and result.points == 0
    assert "MemoryError" in result.message or "memory" in result.message
    assert statuses(report)["linear_module"] == "passed"


def test_objects_that_equal_everything_earn_nothing(toy_lab, toy_notebook):
    liar = ("class Liar:\n    def __eq__(self, other): return True\n    def __bool__(self): return True\n"
            "    def __torch_function__(self, *a, **k): return True\n"
            "def scaled_add(a, b, s):\n    return Liar()\n"
            "class Sub(torch.Tensor):\n    def __eq__(self, other): return True\n"
            "def softmax_rows(x):\n    return torch.zeros_like(x).as_subclass(Sub)\n")
    report = grade(toy_lab, notebook=toy_notebook(liar), device="cpu")
    assert statuses(report)["scaled_add"] == "failed"
    assert "expected a tensor" in {c.id: c for c in report.checks}["scaled_add"].message
    assert statuses(report)["softmax_matches_torch"] == "failed"


def test_no_process_outlives_grading(toy_lab, toy_notebook, tmp_path):
    marker = f"gaplabs-leftover-{os.getpid()}-{time.time_ns()}"
    detach = ("import subprocess, os\n"
              f"subprocess.Popen(['sh', '-c', 'exec -a {marker} sleep 60'], start_new_session=True)\n"
              "if os.fork() == 0:\n    os.setsid()\n    import time\n    time.sleep(60)\n    os._exit(0)\n")
    grade(toy_lab, notebook=toy_notebook(detach), device="cpu")
    time.sleep(0.2)
    found = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True)
    assert found.stdout.strip() == "", f"processes left behind: {found.stdout}"


def test_fallback_isolation_also_cleans_up(toy_lab, toy_notebook):
    marker = f"gaplabs-fallback-{os.getpid()}-{time.time_ns()}"
    detach = f"import subprocess\nsubprocess.Popen(['sh', '-c', 'exec -a {marker} sleep 60'], start_new_session=True)\n"
    report = grade(toy_lab, notebook=toy_notebook(detach), device="cpu", isolate=False)
    assert report.isolation == "process-group" and report.passed
    time.sleep(0.2)
    found = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True)
    assert found.stdout.strip() == ""


def test_hidden_checks_are_not_readable_from_the_submission(toy_lab, toy_notebook):
    spy = (f"import os\nCHECKS = os.listdir({str(toy_lab.checks_dir)!r}) if os.path.isdir({str(toy_lab.checks_dir)!r}) else []\n"
           "def scaled_add(a, b, s):\n    assert not CHECKS, CHECKS\n    return a + s * b\n")
    report = grade(toy_lab, notebook=toy_notebook(spy), device="cpu")
    if report.isolation != "namespaces":
        pytest.skip("this kernel does not allow user namespaces; hiding needs them")
    assert statuses(report)["scaled_add"] == "passed"


def test_output_floods_and_warnings_do_not_fail_checks(toy_lab, toy_notebook):
    noisy = ("import sys, warnings\nfor _ in range(20000):\n    print('x' * 100)\n"
             "warnings.warn('loud')\nsys.stderr.write('error text\\n' * 1000)\n")
    report = grade(toy_lab, notebook=toy_notebook(noisy), device="cpu")
    assert report.passed
    assert "error text" in report.output_tail


def test_broken_notebooks_get_clear_errors(toy_lab, tmp_path):
    bad_json = tmp_path / "bad.ipynb"
    bad_json.write_text('{"cells": [')
    with pytest.raises(NotebookError) as info:
        grade(toy_lab, notebook=bad_json, device="cpu")
    assert "not valid JSON" in info.value.what and "line 1" in info.value.where
    latin = tmp_path / "latin.ipynb"
    latin.write_bytes(b'{"cells": [], "x": "\xe9"}')
    with pytest.raises(NotebookError, match="not UTF-8"):
        grade(toy_lab, notebook=latin, device="cpu")
    empty = make_notebook(tmp_path / "empty.ipynb", ["#md only prose"])
    with pytest.raises(NotebookError, match="no code cells"):
        grade(toy_lab, notebook=empty, device="cpu")


def test_skip_tagged_cells_do_not_run(toy_lab, tmp_path):
    from tests.conftest import solution_cells

    cells = solution_cells() + ["raise RuntimeError('slow demo')"]
    path = make_notebook(tmp_path / "tagged.ipynb", cells, tags={len(cells) - 1: ["grader:skip"]})
    report = grade(toy_lab, notebook=path, device="cpu")
    assert report.passed and report.cell_errors == []


def test_cli_exit_codes_and_json_report(toy_lab, toy_notebook, tmp_path):
    env = {**os.environ}
    labs = [sys.executable, "-m", "cli"]
    good = subprocess.run([*labs, "grade", "toy-lab", "--submission", str(toy_notebook()), "--json", str(tmp_path / "r.json")],
                          capture_output=True, text=True, env=env)
    assert good.returncode == 0, good.stdout + good.stderr
    data = json.loads((tmp_path / "r.json").read_text())
    assert set(data) >= {"lab", "lab_version", "submission", "device", "score", "max_score", "passed", "duration_s", "checks"}
    assert set(data["checks"][0]) >= {"id", "title", "points", "max_points", "status", "message"}
    bad = subprocess.run([*labs, "grade", "toy-lab", "--submission", str(toy_notebook("def scaled_add(a, b, s):\n    return a\n", name="w.ipynb"))],
                         capture_output=True, text=True, env=env)
    assert bad.returncode == 1
    missing = subprocess.run([*labs, "grade", "toy-lab", "--submission", str(tmp_path / "nope.ipynb")], capture_output=True, text=True, env=env)
    assert missing.returncode == 2 and "no notebook at" in missing.stderr and "Traceback" not in missing.stderr
    unknown = subprocess.run([*labs, "grade", "toy-lap"], capture_output=True, text=True, env=env)
    assert unknown.returncode == 2 and "did you mean 'toy-lab'" in unknown.stderr
