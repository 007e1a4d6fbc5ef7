"""`labs validate`: each step's verdict, first against a scripted grader, then with the real engine."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from grader.authoring import new_lab, release
from grader.cli_instructor import register
from grader.registry import EXTRA_ROOTS_ENV, HOME_ENV, Lab
from grader.validate import check_functions, report_dict, summary_line, validate_lab

CHECKS = ("softmax_matches_torch", "softmax_is_stable")  # the scaffold's checks: 2 and 1 points


@dataclass
class FakeCheck:
    id: str
    status: str
    points: float
    max_points: float
    message: str = ""


@dataclass
class FakeReport:
    checks: list[FakeCheck]
    duration_s: float = 0.01
    cell_errors: list[dict] = field(default_factory=list)
    lab_error: str | None = None

    @property
    def score(self) -> float:
        return sum(c.points for c in self.checks)

    @property
    def max_score(self) -> float:
        return sum(c.max_points for c in self.checks if c.status != "skipped")


def report(lab: Lab, **statuses: str) -> FakeReport:
    """A report where every check passes except those given, e.g. report(lab, softmax_is_stable="failed")."""
    checks = []
    for check in lab.spec.checks:
        status = statuses.get(check.id, "passed")
        checks.append(
            FakeCheck(check.id, status, check.points if status == "passed" else 0.0, check.points, f"{status}!")
        )
    return FakeReport(checks)


class ScriptedGrader:
    """Stands in for grader.engine.grade: answers by which notebook (and mutant) is graded."""

    def __init__(self, lab: Lab, *, solution=None, starter=None, mutant=None, crash_on: str | None = None):
        self.lab = lab
        self.solution = solution or report(lab)
        self.starter = starter or report(lab, **dict.fromkeys(CHECKS, "failed"))
        self.mutant = mutant or report(lab, softmax_is_stable="failed")
        self.crash_on = crash_on
        self.calls: list[tuple[str, int, str]] = []

    def __call__(self, lab, *, notebook: Path, extra_code=(), device="auto"):
        kind = "starter" if notebook == lab.starter_path else ("mutant" if extra_code else "solution")
        self.calls.append((kind, len(extra_code), device))
        if kind == self.crash_on:
            raise RuntimeError("the grading engine failed")
        return getattr(self, kind)


@pytest.fixture
def lab(tmp_path, monkeypatch) -> Lab:
    root = tmp_path / "root"
    new_lab("demo-lab", root=root)
    monkeypatch.setenv(EXTRA_ROOTS_ENV, str(root))
    monkeypatch.setenv(HOME_ENV, str(tmp_path / "home"))
    return Lab(dir=root / "labs" / "demo-lab", root=root, origin="test")


def steps_of(result) -> dict[str, tuple[str, str]]:
    return {step.name: (step.status, step.detail) for step in result.steps}


# ---------------------------------------------------------------------------------------------
# Verdicts, with a scripted grader


def test_a_consistent_lab_passes_every_step_in_order(lab):
    grader = ScriptedGrader(lab)
    result = validate_lab(lab, device="cpu", grade=grader)
    assert [s.name for s in result.steps] == [
        "lab.yaml schema",
        "checks match lab.yaml",
        "starter in sync",
        "solution gets full marks",
        "starter fails the checks",
        "mutant no_max_subtraction",
        "solution grading time",
        "mutant coverage",
    ]
    assert result.ok, result.steps
    assert [kind for kind, _, _ in grader.calls] == ["solution", "starter", "mutant"]
    assert all(device == "cpu" for _, _, device in grader.calls)
    assert grader.calls[2][1] == 1, "a mutant is graded as the solution plus its code as one extra cell"


def test_solution_losing_points_fails_and_makes_the_other_gradings_inconclusive(lab):
    grader = ScriptedGrader(lab, solution=report(lab, softmax_is_stable="failed"))
    result = validate_lab(lab, device="cpu", grade=grader)
    steps = steps_of(result)
    assert not result.ok
    assert steps["solution gets full marks"][0] == "FAIL"
    assert "softmax_is_stable: failed" in steps["solution gets full marks"][1]
    assert steps["mutant no_max_subtraction"][0] == "skip"
    assert steps["starter fails the checks"][0] == "skip"


def test_a_solution_cell_that_raises_fails_even_with_full_marks(lab):
    solution = report(lab)
    solution.cell_errors = [{"label": "cell 5", "type": "ValueError", "message": "demo went wrong"}]
    result = validate_lab(lab, device="cpu", grade=ScriptedGrader(lab, solution=solution))
    status, detail = steps_of(result)["solution gets full marks"]
    assert status == "FAIL" and "cell 5: ValueError: demo went wrong" in detail


def test_a_lab_error_from_the_engine_fails_the_solution_step(lab):
    solution = report(lab)
    solution.lab_error = "checks/test_softmax.py: ImportError: no module named nope"
    result = validate_lab(lab, device="cpu", grade=ScriptedGrader(lab, solution=solution))
    assert steps_of(result)["solution gets full marks"] == ("FAIL", f"the checks could not run: {solution.lab_error}")


def test_a_check_with_points_passing_on_the_starter_fails_unless_free(lab):
    starter = report(lab, softmax_matches_torch="failed")  # softmax_is_stable passes on the starter
    result = validate_lab(lab, device="cpu", grade=ScriptedGrader(lab, starter=starter))
    status, detail = steps_of(result)["starter fails the checks"]
    assert status == "FAIL" and "softmax_is_stable" in detail and "softmax_matches_torch" not in detail

    yaml_path = lab.dir / "lab.yaml"
    yaml_path.write_text(yaml_path.read_text().replace("    points: 1\n", "    points: 1\n    free: true\n"))
    free_lab = Lab(dir=lab.dir, root=lab.root, origin="test")  # spec is cached per Lab object
    result = validate_lab(free_lab, device="cpu", grade=ScriptedGrader(free_lab, starter=starter))
    assert steps_of(result)["starter fails the checks"][0] == "ok"


def test_a_mutant_that_escapes_its_check_fails_and_says_why(lab):
    result = validate_lab(lab, device="cpu", grade=ScriptedGrader(lab, mutant=report(lab)))
    status, detail = steps_of(result)["mutant no_max_subtraction"]
    assert status == "FAIL"
    assert "not caught by softmax_is_stable" in detail and "exp(1000) overflows" in detail


def test_a_mutant_whose_own_code_raises_says_so(lab):
    mutant = report(lab)
    mutant.cell_errors = [{"label": "extra 1", "type": "NameError", "message": "name 'torh' is not defined"}]
    status, detail = steps_of(validate_lab(lab, device="cpu", grade=ScriptedGrader(lab, mutant=mutant)))[
        "mutant no_max_subtraction"
    ]
    assert status == "FAIL" and "NameError" in detail and "overrode nothing" in detail


def test_a_skipped_check_is_not_counted_against_a_mutant_or_the_solution(lab):
    solution = report(lab, softmax_is_stable="skipped")
    mutant = report(lab, softmax_is_stable="skipped")
    result = validate_lab(lab, device="cpu", grade=ScriptedGrader(lab, solution=solution, mutant=mutant))
    steps = steps_of(result)
    assert steps["solution gets full marks"][0] == "ok" and "skipped" in steps["solution gets full marks"][1]
    assert steps["mutant no_max_subtraction"][0] == "ok"
    assert "not run here (skipped): softmax_is_stable" in steps["mutant no_max_subtraction"][1]


def test_checks_and_lab_yaml_must_name_the_same_checks(lab):
    check_file = lab.checks_dir / "test_softmax.py"
    check_file.write_text(check_file.read_text() + "\n\ndef test_sums_to_one(submission):\n    pass\n")
    result = validate_lab(lab, device="cpu", grade=ScriptedGrader(lab))
    status, detail = steps_of(result)["checks match lab.yaml"]
    assert status == "FAIL" and "test_sums_to_one (test_softmax.py:" in detail

    check_file.write_text(check_file.read_text().replace("def test_softmax_is_stable", "def helper_is_stable"))
    detail = steps_of(validate_lab(lab, device="cpu", grade=ScriptedGrader(lab)))["checks match lab.yaml"][1]
    assert "lab.yaml check 'softmax_is_stable' has no function test_softmax_is_stable" in detail


def test_check_functions_reads_top_level_tests_without_importing(lab):
    (lab.checks_dir / "test_more.py").write_text(
        "raise SystemExit('never imported')\n"
        "async def test_a(): ...\n"
        "class TestGroup:\n    def test_in_class(self): ...\n"
        "def helper(): ...\n"
    )
    found = check_functions(lab)
    assert set(found) == {"softmax_matches_torch", "softmax_is_stable", "a"}
    assert found["a"] == "test_more.py:2"
    (lab.checks_dir / "test_twice.py").write_text("def test_a(): ...\n")
    with pytest.raises(Exception, match="defined twice"):
        check_functions(lab)
    (lab.checks_dir / "test_twice.py").write_text("def test_b(:\n")
    with pytest.raises(Exception, match="not valid Python"):
        check_functions(lab)


def test_starter_out_of_sync_fails(lab):
    lab.starter_path.write_text(lab.starter_path.read_text().replace("Try it", "Try this"))
    status, detail = steps_of(validate_lab(lab, device="cpu", grade=ScriptedGrader(lab)))["starter in sync"]
    assert status == "FAIL" and "labs release demo-lab" in detail


def test_a_broken_lab_yaml_stops_after_the_schema_step(lab):
    grader = ScriptedGrader(lab)
    (lab.dir / "lab.yaml").write_text("id: demo-lab\ntitle: x\n")
    broken = Lab(dir=lab.dir, root=lab.root, origin="test")  # spec is cached per Lab object
    result = validate_lab(broken, device="cpu", grade=grader)
    assert [(s.name, s.status) for s in result.steps] == [("lab.yaml schema", "FAIL")]
    assert grader.calls == []


def test_bad_mutant_header_and_no_mutants_fail(lab):
    mutant = lab.mutants_dir / "no_max_subtraction.py"
    mutant.write_text(mutant.read_text().replace("# catches: softmax_is_stable", "# catches: softmax_is_stabel"))
    assert steps_of(validate_lab(lab, device="cpu", grade=ScriptedGrader(lab)))["mutants"][0] == "FAIL"
    mutant.unlink()
    status, detail = steps_of(validate_lab(lab, device="cpu", grade=ScriptedGrader(lab)))["mutants"]
    assert status == "FAIL" and "no mutants" in detail


def test_a_crashing_grading_fails_its_step_and_the_rest_still_runs(lab):
    grader = ScriptedGrader(lab, crash_on="starter")
    steps = steps_of(validate_lab(lab, device="cpu", grade=grader))
    assert steps["starter fails the checks"] == ("FAIL", "grading crashed: RuntimeError: the grading engine failed")
    assert steps["mutant no_max_subtraction"][0] == "ok"
    assert [kind for kind, _, _ in grader.calls] == ["solution", "starter", "mutant"]


def test_grading_slower_than_the_budget_fails(lab, monkeypatch):
    import grader.validate as validate_module

    ticks = iter([0.0, 45.0] + [0.0, 1.0] * 10)  # the solution's grading "takes" 45 s, budget is 30 s
    monkeypatch.setattr(validate_module.time, "perf_counter", lambda: next(ticks))
    status, detail = steps_of(validate_lab(lab, device="cpu", grade=ScriptedGrader(lab)))["solution grading time"]
    assert status == "FAIL" and "45.0 s for a budget of 30 s" in detail


def test_a_lab_that_does_not_run_on_the_device_is_skipped_not_failed(lab):
    yaml_path = lab.dir / "lab.yaml"
    yaml_path.write_text(yaml_path.read_text().replace("devices: [cpu]", "devices: [cuda]"))
    cuda_lab = Lab(dir=lab.dir, root=lab.root, origin="test")
    grader = ScriptedGrader(cuda_lab)
    result = validate_lab(cuda_lab, device="cpu", grade=grader)
    assert grader.calls == []
    assert steps_of(result)["solution gets full marks"] == ("skip", "the lab runs on cuda, not on cpu")


def test_report_json_and_summary_line(lab):
    good = validate_lab(lab, device="cpu", grade=ScriptedGrader(lab))
    bad = validate_lab(lab, device="cpu", grade=ScriptedGrader(lab, mutant=report(lab)))
    data = json.loads(json.dumps(report_dict([good, bad])))
    assert data["ok"] is False and [entry["ok"] for entry in data["labs"]] == [True, False]
    assert data["labs"][1]["steps"][5]["status"] == "FAIL"
    assert summary_line([good]) == "validated 1 lab(s): all ok"
    assert summary_line([good, bad]) == "validated 2 lab(s): 1 failed (1 failing step(s)): demo-lab"


# ---------------------------------------------------------------------------------------------
# With the real grading engine


def cli():
    app = typer.Typer()
    register(app)
    return app


def test_the_scaffold_validates_as_created_with_the_real_engine(lab, tmp_path):
    json_path = tmp_path / "validate.json"
    result = CliRunner().invoke(cli(), ["validate", "demo-lab", "--device", "cpu", "--json", str(json_path)])
    assert result.exit_code == 0, result.output
    assert "all ok" in result.output
    data = json.loads(json_path.read_text())
    assert data["ok"] and {step["status"] for step in data["labs"][0]["steps"]} == {"ok"}


def test_the_real_engine_catches_a_broken_solution_and_an_escaping_mutant(lab, tmp_path):
    # The solution forgets to subtract the max: it now equals the mutant, so the solution loses
    # softmax_is_stable and the mutant is no longer distinguishable from it.
    solution = json.loads(lab.solution_path.read_text())
    for cell in solution["cells"]:
        text = "".join(cell["source"])
        cell["source"] = text.replace("x - x.amax(dim=dim, keepdim=True)", "x")
    lab.solution_path.write_text(json.dumps(solution))
    release(lab)
    # And a second mutant that only renames a local variable: no check can catch it.
    (lab.mutants_dir / "harmless.py").write_text(
        "# catches: softmax_matches_torch\n# why: not a mistake at all\nimport torch\n\n"
        "def softmax(x, dim=-1):\n    z = torch.exp(x - x.amax(dim=dim, keepdim=True))\n    return z / z.sum(dim=dim, keepdim=True)\n"
    )
    result = CliRunner().invoke(cli(), ["validate", "demo-lab", "--device", "cpu", "--json", str(tmp_path / "v.json")])
    assert result.exit_code == 1, result.output
    steps = {step["name"]: step for step in json.loads((tmp_path / "v.json").read_text())["labs"][0]["steps"]}
    assert steps["solution gets full marks"]["status"] == "FAIL"
    assert "softmax_is_stable" in steps["solution gets full marks"]["detail"]
    assert steps["mutant harmless"]["status"] == "FAIL"
    assert "not caught by softmax_matches_torch" in steps["mutant harmless"]["detail"]


def test_cli_validate_usage_errors_are_reported_without_a_traceback(lab):
    from cli import app  # the real `labs` app: it turns GaplabsError into a message and exit code 2

    for args, message in (
        (["validate"], "no lab named"),
        (["validate", "demo-lab", "--all"], "not both"),
        (["validate", "demo-lab", "--device", "tpu"], "unknown device"),
        (["validate", "demo-lap"], "did you mean 'demo-lab'"),
    ):
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 2, (args, result.output)
        assert message in result.output and "Traceback" not in result.output, (args, result.output)


def test_all_means_every_lab_with_instructor_material(lab, tmp_path):
    from grader.cli_instructor import _select_labs
    from grader.packing import pack_labs

    # An installed student pack (no solutions) under $GAPLABS_HOME/packs/ is not validated by --all.
    pack_labs([lab], dest=tmp_path / "home" / "packs" / "course", kind="student")
    new_lab("student-only", root=tmp_path / "other")
    pack_labs(
        [Lab(dir=tmp_path / "other" / "labs" / "student-only", root=tmp_path / "other", origin="test")],
        dest=tmp_path / "home" / "packs" / "other-course",
        kind="student",
    )
    selected = {found.id: found.origin for found in _select_labs(None, True, command="validate")}
    assert selected["demo-lab"].startswith("path:"), "the lab root on GAPLABS_LABS_PATH is validated"
    assert "student-only" not in selected, "a student pack cannot be validated: it has no solution"
