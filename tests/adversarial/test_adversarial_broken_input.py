"""Broken input: each case runs `labs grade` as a subprocess and gets the documented exit code and a
clear message (what, where, what to do), never a raw traceback.

Exit codes (cli.py): 2 for usage, lab and notebook errors (nothing was graded); 1 for a notebook
that was graded but did not get full marks; 0 for full marks.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest

from tests.adversarial.harness import (
    LAB_ID,
    SOLUTION,
    CliRun,
    check_points,
    cli_env,
    copy_lab,
    grade_cli,
    graded_sources,
    header_cell,
    make_notebook,
    record,
    run_labs,
    solution_cell,
)


def grade(tmp_path: Path, notebook: Path | str, *, labs_path: Path | None = None, lab_id: str = LAB_ID) -> CliRun:
    env = cli_env(tmp_path / "home", labs_path=labs_path, cwd=tmp_path)
    return run_labs(["grade", lab_id, "--device", "cpu", "--submission", str(notebook)], cwd=tmp_path, env=env)


def assert_clear(run: CliRun, case: str, *, code: int, says: list[str]) -> None:
    """The documented exit code, the expected words, a where/fix for usage errors, and no traceback."""
    record("broken", case, exit_code=run.returncode, expected=code, raw_traceback=run.traceback)
    assert not run.traceback, f"{case}: raw traceback\n{run.describe()}"
    assert run.returncode == code, f"{case}: expected exit {code}\n{run.describe()}"
    for words in says:
        assert words in run.output, f"{case}: the message should say {words!r}\n{run.describe()}"
    if code == 2:
        assert "where:" in run.output and "fix:" in run.output, f"{case}: the message must say where and what to do\n{run.describe()}"


def write_bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


# -- notebooks that cannot be read: exit 2 ------------------------------------------------------
UNREADABLE = {
    "malformed-json": (b'{"cells": [{"cell_type": "code", "source": "x = 1"', ["not valid JSON", "line 1"]),
    "empty-file": (b"", ["not valid JSON"]),
    "json-but-not-a-notebook": (b"[1, 2, 3]", ["not a Jupyter notebook"]),
    "non-utf8-bytes": ('{"cells": [], "metadata": {"author": "Ren\xe9e"}}'.encode("latin-1"), ["not UTF-8"]),
    "binary-garbage": (bytes(random.Random(0).randrange(256) for _ in range(4096)), ["not UTF-8"]),
    "unknown-future-format": (json.dumps({"nbformat": 99, "nbformat_minor": 0, "metadata": {},
                                          "cells": [{"cell_type": "code", "source": "x = 1", "metadata": {}}]}).encode(),
                              ["format version 99"]),
    "no-code-cells": (json.dumps({"nbformat": 4, "nbformat_minor": 5, "metadata": {},
                                  "cells": [{"cell_type": "markdown", "metadata": {}, "source": "# only prose"}]}).encode(),
                      ["no code cells"]),
    "cell-source-not-text": (json.dumps({"nbformat": 4, "nbformat_minor": 5, "metadata": {},
                                         "cells": [{"cell_type": "code", "metadata": {}, "source": 42, "outputs": []}]}).encode(),
                             ["neither text nor a list", "cell 1"]),
}


@pytest.mark.parametrize("case", sorted(UNREADABLE))
def test_unreadable_notebook_is_a_usage_error(tmp_path, case):
    data, says = UNREADABLE[case]
    run = grade(tmp_path, write_bytes(tmp_path / "broken.ipynb", data))
    assert_clear(run, case, code=2, says=says)


def test_missing_notebook_and_folder_are_usage_errors(tmp_path):
    assert_clear(grade(tmp_path, tmp_path / "nope.ipynb"), "notebook-path-missing", code=2, says=["no notebook at"])
    (tmp_path / "folder.ipynb").mkdir()
    assert_clear(grade(tmp_path, tmp_path / "folder.ipynb"), "notebook-path-is-a-folder", code=2, says=["is a folder"])


def test_unknown_lab_is_a_usage_error(tmp_path):
    notebook = make_notebook(tmp_path / "x.ipynb", ["x = 1"])
    assert_clear(grade(tmp_path, notebook, lab_id="attention-from-scrach"), "unknown-lab", code=2,
                 says=["no lab named", "did you mean 'attention-from-scratch'"])


# -- notebooks that are graded: an old format, a syntax error, a missing or misdeclared answer ----
def test_old_notebook_format_is_upgraded_and_graded(tmp_path):
    """nbformat 3 keeps code in worksheets[].cells[].input; it is upgraded, then graded like any notebook."""
    cells = [{"cell_type": "code", "input": source, "language": "python", "outputs": [], "metadata": {}}
             for source in graded_sources(SOLUTION)]
    old = {"nbformat": 3, "nbformat_minor": 0, "metadata": {"name": "attention"}, "worksheets": [{"cells": cells, "metadata": {}}]}
    notebook = write_bytes(tmp_path / "old.ipynb", json.dumps(old).encode())
    run = grade_cli(notebook, tmp_path / "run", extra=("--quiet",))
    full = f"{check_points():g}"
    assert_clear(run, "old-notebook-format-v3", code=0, says=[f"{LAB_ID}: {full}/{full}"])


def test_syntax_error_in_one_cell_is_graded_and_located(tmp_path):
    broken = solution_cell("MultiHeadSelfAttention").replace("def forward(self, x, causal=False, key_padding_mask=None):",
                                                             "def forward(self, x, causal=False, key_padding_mask=None)")
    cells = [header_cell(), solution_cell("scaled_dot_product_attention"), broken]
    run = grade_cli(make_notebook(tmp_path / "syntax.ipynb", cells), tmp_path / "run")
    assert_clear(run, "syntax-error-in-one-cell", code=1, says=["SyntaxError", "cell 3"])
    error = run.report["cell_errors"][0]
    assert error["type"] == "SyntaxError" and error["cell"] == 3 and isinstance(error["line"], int), error
    # the cells around it still ran: the attention function earns its points
    assert {c["id"]: c["status"] for c in run.report["checks"]}["sdpa_matches_torch"] == "passed"


def test_missing_function_and_wrong_signature_are_graded_with_messages(tmp_path):
    wrong_signature = solution_cell("MultiHeadSelfAttention").replace("def __init__(self, d_model, n_heads, bias=True):",
                                                                      "def __init__(self, d_model):\n        n_heads, bias = 4, True")
    assert wrong_signature != solution_cell("MultiHeadSelfAttention"), "the solution's __init__ line changed; update this test"
    run = grade_cli(make_notebook(tmp_path / "missing.ipynb", [header_cell(), wrong_signature]), tmp_path / "run")
    messages = {c["id"]: c["message"] for c in (run.report or {}).get("checks", [])}
    assert_clear(run, "required-function-missing", code=1, says=["does not define 'scaled_dot_product_attention'"])
    record("broken", "required-class-wrong-signature", exit_code=run.returncode, expected=1, raw_traceback=run.traceback)
    assert "TypeError" in messages["module_matches_torch"] and "argument" in messages["module_matches_torch"], messages


# -- labs that are broken: exit 2 ---------------------------------------------------------------
def _broken_lab(tmp_path: Path, change) -> Path:
    pack = copy_lab(tmp_path / "pack")
    change(pack / "labs" / LAB_ID)
    return pack


def test_malformed_lab_yaml(tmp_path):
    def break_yaml(lab: Path) -> None:
        text = (lab / "lab.yaml").read_text()
        (lab / "lab.yaml").write_text(text.replace("title:", "title: [unclosed", 1))

    notebook = make_notebook(tmp_path / "x.ipynb", ["x = 1"])
    run = grade(tmp_path, notebook, labs_path=_broken_lab(tmp_path, break_yaml))
    assert_clear(run, "malformed-lab-yaml", code=2, says=["lab.yaml is not valid YAML", "line"])


def test_lab_yaml_with_a_wrong_key(tmp_path):
    def misspell(lab: Path) -> None:
        text = (lab / "lab.yaml").read_text()
        (lab / "lab.yaml").write_text(text.replace("hints:", "hint:", 1))

    notebook = make_notebook(tmp_path / "x.ipynb", ["x = 1"])
    run = grade(tmp_path, notebook, labs_path=_broken_lab(tmp_path, misspell))
    assert_clear(run, "lab-yaml-unknown-key", code=2, says=["lab.yaml is invalid", "hint"])


def test_lab_without_checks(tmp_path):
    def remove_checks(lab: Path) -> None:
        shutil.rmtree(lab / "checks")
        (lab / "checks").mkdir()

    notebook = make_notebook(tmp_path / "x.ipynb", ["x = 1"])
    run = grade(tmp_path, notebook, labs_path=_broken_lab(tmp_path, remove_checks))
    assert_clear(run, "lab-without-checks", code=2, says=["has no checks"])
