"""The GitHub Actions templates in examples/ci/ still work: their `labs` lines run on CPU here.

Each workflow is played job by job the way GitHub would: a fresh workspace per job (and per
matrix entry) holding a copy of a course repository, the `run:` blocks that call `labs` executed
with bash -e (GitHub's default shell), `--device cuda` swapped for `--device cpu`, and
upload-artifact / download-artifact emulated by copying files between workspaces. The course is a
fixture: a lab pack made by `labs new` + `labs pack --instructor`, installed by the templates' own
`labs fetch` step, and a class of five submissions (full marks, a mutant, the starter, a second
full marks, and a file that is not a notebook).
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from grader.authoring import new_lab
from grader.packing import pack_labs
from grader.registry import Lab

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = sorted((ROOT / "examples" / "ci").glob("*.yml"))
LAB = "ci-demo"
EXPECTED_STATUS = {"alice": "ok", "bob": "failed", "carol": "failed", "dave": "ok", "erin": "error"}


# ---------------------------------------------------------------- reading the templates


def workflow(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def logical_lines(script: str) -> list[str]:
    """Shell lines with backslash continuations joined."""
    joined = re.sub(r"\\\n\s*", " ", script)
    return [line.strip() for line in joined.splitlines() if line.strip()]


def labs_lines(script: str) -> list[str]:
    return [line for line in logical_lines(script) if line.startswith("labs ")]


def all_labs_lines(data: dict) -> list[str]:
    return [line for job in data["jobs"].values() for step in job["steps"] for line in labs_lines(step.get("run", ""))]


def expand(text: str, matrix: dict) -> str:
    """Evaluate the ${{ }} expressions the templates may use in run blocks and `with:` values."""
    def value(match: re.Match) -> str:
        expression = match.group(1).strip()
        if expression.startswith("matrix.") and expression[len("matrix."):] in matrix:
            return str(matrix[expression[len("matrix."):]])
        if expression in ("github.ref", "github.run_id"):
            return "test"
        raise AssertionError(f"the template uses ${{{{ {expression} }}}}, which this test does not emulate")
    return re.sub(r"\$\{\{(.*?)\}\}", value, str(text))


def step_runs(step: dict, env: dict) -> bool:
    condition = str(step.get("if", "true")).strip()
    if condition in ("true", "always()"):
        return True
    match = re.fullmatch(r"env\.(\w+) != ''", condition)
    assert match, f"the template uses `if: {condition}`, which this test does not emulate"
    return env.get(match.group(1), "") != ""


# ---------------------------------------------------------------- static checks (fast)


def test_templates_exist() -> None:
    names = {path.name for path in TEMPLATES}
    assert {"grade-gpu.yml", "grade-cpu.yml", "grade-sharded.yml"} <= names


def shell_words(line: str, env: dict) -> list[str]:
    """The words bash would pass to `labs` for this line (quotes, $VARS and ${X:+...} included)."""
    command = line.split("||")[0].strip()
    done = subprocess.run(["bash", "-c", "printf '%s\\0' " + command[len("labs "):]], env=env,
                          capture_output=True, text=True, check=True)
    return done.stdout.split("\0")[:-1]


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.name)
def test_every_labs_line_parses_against_the_real_cli(path: Path, tmp_path: Path, monkeypatch) -> None:
    """Options renamed or removed in the CLI break this test in a second, before they break a course's CI.

    Each line runs for real against inputs that do not exist (no such lab, no such pack, no such
    gradebook): the command must get past option parsing and stop on that, not on a usage error.
    """
    from typer.testing import CliRunner

    from cli import app

    monkeypatch.setenv("GAPLABS_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("GAPLABS_LABS_PATH", raising=False)
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    monkeypatch.chdir(tmp_path)
    data = workflow(path)
    env = {"PATH": os.environ.get("PATH", ""), **{k: str(v) for k, v in data.get("env", {}).items()},
           "LAB": "no-such-lab", "LAB_PACK": str(tmp_path / "no-such-pack"), "LAB_PACK_SHA256": ""}
    lines = all_labs_lines(data)
    assert any(line.startswith("labs grade ") for line in lines)
    for line in lines:
        words = shell_words(expand(line, {"shard": 1}), env)
        result = CliRunner().invoke(app, words)
        output = result.output
        assert "Usage:" not in output and result.exit_code in (0, 1, 2), (
            f"{path.name}: `{line}` no longer parses (exit {result.exit_code}):\n{output}")
        assert any(hint in output for hint in ("no lab named", "cannot tell", "no gradebook JSON")), output


def test_gpu_template_grades_on_cuda_on_a_self_hosted_runner() -> None:
    data = workflow(ROOT / "examples" / "ci" / "grade-gpu.yml")
    job = data["jobs"]["grade"]
    assert "self-hosted" in job["runs-on"] and "gpu" in job["runs-on"]
    grade = next(line for line in all_labs_lines(data) if line.startswith("labs grade"))
    for flag in ("--device cuda", "--junit", "--gradebook", "--jobs 2"):
        assert flag in grade, f"the GPU template's grade line lost {flag}"
    assert any(line.startswith("labs gradebook check") for line in all_labs_lines(data))


def test_sharded_template_shard_count_matches_the_matrix() -> None:
    data = workflow(ROOT / "examples" / "ci" / "grade-sharded.yml")
    shards = data["jobs"]["grade"]["strategy"]["matrix"]["shard"]
    grade = next(line for line in all_labs_lines(data) if line.startswith("labs grade"))
    count = re.search(r"--shard \$\{\{ matrix.shard \}\}/(\d+)", grade)
    assert count and int(count.group(1)) == len(shards) and sorted(shards) == list(range(1, len(shards) + 1))
    assert data["jobs"]["merge"]["needs"] == "grade"
    assert "if" not in data["jobs"]["merge"], "merging after a failed shard would hide missing students"


# ---------------------------------------------------------------- playing the workflows (slow)


@pytest.fixture(scope="module")
def course(tmp_path_factory) -> dict:
    """A course repository (submissions/ci-demo/*.ipynb) and an instructor pack holding the lab."""
    base = tmp_path_factory.mktemp("course")
    new_lab(LAB, root=base / "authoring")
    lab = Lab(dir=base / "authoring" / "labs" / LAB, root=base / "authoring", origin="test")
    pack = base / "instructor-pack"
    pack_labs([lab], dest=pack, kind="instructor")

    submissions = base / "repo" / "submissions" / LAB
    submissions.mkdir(parents=True)
    solution = json.loads(lab.solution_path.read_text())
    mutant = dict(solution, cells=solution["cells"] + [{
        "cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [],
        "source": (lab.mutants_dir / "no_max_subtraction.py").read_text()}])
    (submissions / "alice.ipynb").write_text(json.dumps(solution))
    (submissions / "bob.ipynb").write_text(json.dumps(mutant))
    shutil.copy(lab.starter_path, submissions / "carol.ipynb")
    (submissions / "dave.ipynb").write_text(json.dumps(solution))
    (submissions / "erin.ipynb").write_text("this upload is not a notebook")
    return {"repo": base / "repo", "pack": pack}


def play(path: Path, course: dict, tmp: Path, **env_overrides: str) -> dict:
    """Run a workflow's jobs in order; returns {"workspaces": {job: [dirs]}, "artifacts": {name: dir}}."""
    data = workflow(path)
    base_env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        **{key: str(value) for key, value in data.get("env", {}).items()},
        "LAB": LAB, "LAB_PACK": str(course["pack"]), "LAB_PACK_SHA256": "",
        **env_overrides,
    }
    base_env.pop("GAPLABS_LABS_PATH", None)  # the lab must come from the template's own `labs fetch`
    artifacts: dict[str, Path] = {}
    workspaces: dict[str, list[Path]] = {}
    for job_name, job in data["jobs"].items():  # the templates list jobs in dependency order
        matrix = job.get("strategy", {}).get("matrix", {})
        assert len(matrix) <= 1, "this test emulates one matrix axis"
        entries = [{key: value} for key, values in matrix.items() for value in values] or [{}]
        for entry in entries:
            workspace = tmp / "-".join([path.stem, job_name, *map(str, entry.values())])
            workspace.mkdir(parents=True)
            env = {**base_env, **{k: str(v) for k, v in job.get("env", {}).items()},
                   "GAPLABS_HOME": str(workspace / ".gaplabs"), "GITHUB_STEP_SUMMARY": str(workspace / "summary.md")}
            for step in job["steps"]:
                if not step_runs(step, env):
                    continue
                uses = step.get("uses", "")
                options = {key: expand(value, entry) for key, value in step.get("with", {}).items()}
                if uses.startswith("actions/checkout@"):
                    shutil.copytree(course["repo"], workspace, dirs_exist_ok=True)
                elif uses.startswith("actions/upload-artifact@"):
                    name = options["name"]
                    assert name not in artifacts, f"two jobs upload the artifact {name!r}: GitHub refuses that"
                    source = workspace / options["path"]
                    assert source.is_dir() and any(source.iterdir()), f"{job_name}: nothing to upload at {options['path']}"
                    artifacts[name] = tmp / "artifacts" / name
                    shutil.copytree(source, artifacts[name])
                elif uses.startswith("actions/download-artifact@"):
                    target = workspace / options["path"]
                    names = [n for n in artifacts if re.fullmatch(options.get("pattern", options.get("name", "")).replace("*", ".*"), n)]
                    assert names, f"{job_name}: no artifact matches {options}"
                    for name in names:
                        merged = options.get("merge-multiple", "").lower() == "true"
                        shutil.copytree(artifacts[name], target if merged else target / name, dirs_exist_ok=True)
                elif "run" in step and labs_lines(step["run"]):
                    script = expand(step["run"], entry).replace("--device cuda", "--device cpu")
                    assert "pip " not in script, "keep installs out of the steps that run `labs` (this test runs those)"
                    done = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", script], cwd=workspace, env=env,
                                          capture_output=True, text=True, timeout=900)
                    assert done.returncode == 0, (f"{path.name} job {job_name} {entry} step {step.get('name')!r} "
                                                  f"exited {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
            workspaces.setdefault(job_name, []).append(workspace)
    return {"workspaces": workspaces, "artifacts": artifacts, "env": base_env}


def gradebook_rows(path: Path) -> dict[str, dict]:
    with open(path, newline="") as handle:
        return {row["submission"]: row for row in csv.DictReader(handle)}


def submission_key(name: str) -> str:
    return Path(name).stem  # the batch may name rows "alice" or "alice.ipynb"


def assert_class_graded(rows: dict[str, dict]) -> None:
    statuses = {submission_key(name): row["status"] for name, row in rows.items()}
    assert statuses == EXPECTED_STATUS
    scores = {submission_key(name): row["score"] for name, row in rows.items()}
    assert scores["alice"] == scores["dave"] == "3" and scores["bob"] == "2" and scores["carol"] == "0"


def gate(path: Path, run: dict, workspace: Path, **env: str) -> subprocess.CompletedProcess:
    """Re-run the template's threshold step with other thresholds, in the finished workspace."""
    step = next(s for s in workflow(path)["jobs"][list(run["workspaces"])[-1]]["steps"]
                if "labs gradebook check" in s.get("run", ""))
    return subprocess.run(["bash", "-e", "-c", step["run"]], cwd=workspace, env={**run["env"], **env},
                          capture_output=True, text=True, timeout=120)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["grade-gpu.yml", "grade-cpu.yml"])
def test_single_job_templates_grade_the_class(name: str, course: dict, tmp_path: Path) -> None:
    path = ROOT / "examples" / "ci" / name
    run = play(path, course, tmp_path)
    workspace = run["workspaces"]["grade"][0]
    grades = run["artifacts"]["grades"]
    assert {"junit.xml", "gradebook.csv", "gradebook.json"} <= {p.name for p in grades.iterdir()}
    assert_class_graded(gradebook_rows(grades / "gradebook.csv"))
    suites = ET.parse(grades / "junit.xml").getroot().findall("testsuite")
    assert len(suites) == 5
    assert (workspace / "summary.md").is_file() and "5 submissions" in (workspace / "summary.md").read_text()
    assert gate(path, run, workspace).returncode == 0
    failing = gate(path, run, workspace, MIN_AVERAGE="0.95")
    assert failing.returncode == 1 and "below threshold" in failing.stdout


@pytest.mark.slow
def test_sharded_template_grades_each_student_once_and_merges(course: dict, tmp_path: Path) -> None:
    path = ROOT / "examples" / "ci" / "grade-sharded.yml"
    run = play(path, course, tmp_path)
    shard_sizes = []
    for workspace in run["workspaces"]["grade"]:
        shard_sizes.append(len(gradebook_rows(next((workspace / "reports").glob("gradebook-*.csv")))))
    assert shard_sizes == [2, 1, 1, 1]  # five names, round-robin over four shards
    merged = run["artifacts"]["grades"]
    assert_class_graded(gradebook_rows(merged / "gradebook.csv"))
    assert len(list(merged.glob("junit-*.xml"))) == 4
    workspace = run["workspaces"]["merge"][0]
    assert "5 submissions" in (workspace / "summary.md").read_text()
    assert gate(path, run, workspace).returncode == 0
    assert gate(path, run, workspace, MAX_ERRORS="0").returncode == 1  # erin's upload is an error
