"""Solution markers -> starter (`labs release`), mutant headers, and the `labs new` scaffold."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest
import typer
from typer.testing import CliRunner

from grader.authoring import (
    build_starter,
    load_mutants,
    new_lab,
    parse_mutant,
    read_notebook,
    release,
    render_notebook,
    starter_sync_problem,
)
from grader.cli_instructor import register
from grader.errors import GaplabsError, LabFormatError
from grader.registry import EXTRA_ROOTS_ENV, HOME_ENV, Lab


def notebook(*cells: dict) -> dict:
    return {"cells": list(cells), "metadata": {}, "nbformat": 4, "nbformat_minor": 5}


def code(source: str | list[str], *, cell_id: str = "c", **extra) -> dict:
    return {
        "cell_type": "code",
        "execution_count": None,
        "id": cell_id,
        "metadata": {},
        "outputs": [],
        "source": source,
        **extra,
    }


def markdown(source: str, *, cell_id: str = "m") -> dict:
    return {"cell_type": "markdown", "id": cell_id, "metadata": {}, "source": source}


def starter_sources(solution: dict) -> list[str]:
    starter, _ = build_starter(solution, source_name="solution.ipynb")
    return [
        "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"] for cell in starter["cells"]
    ]


# ---------------------------------------------------------------------------------------------
# Markers


def test_region_becomes_a_stub_at_the_begin_lines_indentation():
    source = (
        "def attention(q, k, v):\n"
        '    """Scaled dot-product attention."""\n'
        "    ### BEGIN SOLUTION scale the scores by 1/sqrt(d)\n"
        "    scores = q @ k.T / q.shape[-1] ** 0.5\n"
        "    return scores.softmax(-1) @ v\n"
        "    ### END SOLUTION\n"
        "\n"
        "HEADS = 4\n"
    )
    (got,) = starter_sources(notebook(code(source)))
    assert got == (
        "def attention(q, k, v):\n"
        '    """Scaled dot-product attention."""\n'
        '    raise NotImplementedError("scale the scores by 1/sqrt(d)")\n'
        "\n"
        "HEADS = 4\n"
    )


def test_stub_without_text_gets_a_default_message_and_the_stub_raises():
    source = "def f(x):\n\t### BEGIN SOLUTION\n\treturn x + 1\n\t### END SOLUTION"
    (got,) = starter_sources(notebook(code(source)))
    assert got == 'def f(x):\n\traise NotImplementedError("implement this part")'
    namespace: dict = {}
    exec(compile(got, "starter", "exec"), namespace)
    with pytest.raises(NotImplementedError, match="implement this part"):
        namespace["f"](1)


def test_stub_text_with_quotes_and_backslashes_stays_valid_python():
    text = 'return "x" \\ y'
    source = f"def f():\n    ### BEGIN SOLUTION {text}\n    pass\n    ### END SOLUTION\n"
    (got,) = starter_sources(notebook(code(source)))
    namespace: dict = {}
    exec(compile(got, "starter", "exec"), namespace)
    with pytest.raises(NotImplementedError) as raised:
        namespace["f"]()
    assert str(raised.value) == text


def test_several_regions_in_several_cells_and_a_top_level_region():
    cells = [
        code("### BEGIN SOLUTION define D_MODEL\nD_MODEL = 16\n### END SOLUTION\n", cell_id="a"),
        code(
            [
                "def f():\n",
                "    ### BEGIN SOLUTION one\n",
                "    return 1\n",
                "    ### END SOLUTION\n",
                "def g():\n",
                "    ### BEGIN SOLUTION two\n",
                "    return 2\n",
                "    ### END SOLUTION\n",
            ],
            cell_id="b",
        ),
    ]
    starter, regions = build_starter(notebook(*cells), source_name="solution.ipynb")
    assert [(r.cell_number, r.begin_line, r.end_line, r.text) for r in regions] == [
        (1, 1, 3, "define D_MODEL"),
        (2, 2, 4, "one"),
        (2, 6, 8, "two"),
    ]
    sources = ["".join(c["source"]) for c in starter["cells"]]
    assert sources[0] == 'raise NotImplementedError("define D_MODEL")\n'
    assert "return 1" not in sources[1] and "return 2" not in sources[1]
    assert sources[1].count("raise NotImplementedError") == 2


@pytest.mark.parametrize(
    ("source", "message", "line"),
    [
        ("def f():\n    ### BEGIN SOLUTION\n    return 1\n", "never closed", 2),
        ("### BEGIN SOLUTION\nx = 1\n### BEGIN SOLUTION\ny = 2\n### END SOLUTION\n", "nested", 3),
        ("x = 1\n### END SOLUTION\n", "without a '### BEGIN SOLUTION'", 2),
        ("x = 1\n## BEGIN SOLUTION\nx = 2\n## END SOLUTION\n", "looks like a solution marker", 2),
        ("### BEGIN SOLUTIONS\nx = 2\n", "looks like a solution marker", 1),
    ],
    ids=["unclosed", "nested", "end-without-begin", "two-hashes", "misspelt"],
)
def test_malformed_markers_name_the_notebook_cell_and_line(source, message, line):
    solution = notebook(
        markdown("# Title", cell_id="intro"), code("import torch", cell_id="imports"), code(source, cell_id="work")
    )
    with pytest.raises(LabFormatError) as raised:
        build_starter(solution, source_name="solutions/demo/solution.ipynb")
    assert message in raised.value.what
    assert raised.value.where == f"solutions/demo/solution.ipynb, cell 3 (id work), line {line}"
    assert raised.value.fix


def test_a_region_cannot_span_two_cells():
    cells = [code("### BEGIN SOLUTION\nx = 1\n", cell_id="a"), code("### END SOLUTION\n", cell_id="b")]
    with pytest.raises(LabFormatError, match="never closed"):
        build_starter(notebook(*cells), source_name="s.ipynb")


def test_markers_in_markdown_are_refused_because_the_answer_would_ship():
    cells = [
        markdown("Answer:\n### BEGIN SOLUTION\nit is 42\n### END SOLUTION"),
        code("### BEGIN SOLUTION\nx=1\n### END SOLUTION"),
    ]
    with pytest.raises(LabFormatError, match="markdown") as raised:
        build_starter(notebook(*cells), source_name="s.ipynb")
    assert raised.value.where == "s.ipynb, cell 1 (id m), line 2"


def test_prose_that_mentions_the_markers_is_fine():
    cells = [markdown("Write your code where the starter raises; the solution used BEGIN SOLUTION markers.")]
    cells.append(code("x = 1  # see the BEGIN SOLUTION note\n### BEGIN SOLUTION\ny = 2\n### END SOLUTION\n"))
    sources = starter_sources(notebook(*cells))
    assert sources[0] == cells[0]["source"]
    assert sources[1] == 'x = 1  # see the BEGIN SOLUTION note\nraise NotImplementedError("implement this part")\n'


def test_a_solution_without_regions_is_an_error():
    with pytest.raises(LabFormatError, match="no '### BEGIN SOLUTION'"):
        build_starter(notebook(code("x = 1")), source_name="s.ipynb")


# ---------------------------------------------------------------------------------------------
# The starter notebook


def test_starter_clears_outputs_keeps_metadata_and_copies_markdown():
    answer_output = {"name": "stdout", "output_type": "stream", "text": ["42\n"]}
    cells = [
        markdown("# Lab\n\nDo the thing.", cell_id="intro"),
        code(
            "### BEGIN SOLUTION\nprint(42)\n### END SOLUTION\n",
            cell_id="work",
            execution_count=7,
            outputs=[answer_output],
            metadata={"tags": ["graded"], "collapsed": False},
        ),
        {"cell_type": "raw", "id": "raw", "metadata": {"format": "text/plain"}, "source": "raw text"},
    ]
    solution = {
        "cells": cells,
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    starter, _ = build_starter(solution, source_name="s.ipynb")
    assert starter["cells"][0] == cells[0]
    assert starter["cells"][2] == cells[2]
    work = starter["cells"][1]
    assert work["outputs"] == [] and work["execution_count"] is None
    assert work["metadata"] == {"tags": ["graded"], "collapsed": False}
    assert work["id"] == "work"
    assert starter["metadata"] == solution["metadata"]
    assert cells[1]["outputs"] == [answer_output], "the solution passed in must not be modified"


def test_rendered_starter_is_a_valid_v4_notebook_written_like_nbformat(tmp_path):
    solution = notebook(
        markdown("# Lab é"),
        code("import math\n\n### BEGIN SOLUTION\nx = math.pi\n### END SOLUTION\n", outputs=[], execution_count=3),
    )
    starter, _ = build_starter(solution, source_name="s.ipynb")
    text = render_notebook(starter)
    parsed = nbformat.reads(text, as_version=4)
    nbformat.validate(parsed)
    assert nbformat.writes(parsed) + "\n" == text, "same layout as Jupyter writes: saving it changes nothing"


def test_source_as_a_string_or_a_list_gives_byte_identical_starters():
    lines = ["def f():\n", "    ### BEGIN SOLUTION\n", "    return 1\n", "    ### END SOLUTION\n"]
    as_list = render_notebook(build_starter(notebook(code(lines)), source_name="s")[0])
    as_text = render_notebook(build_starter(notebook(code("".join(lines))), source_name="s")[0])
    assert as_list == as_text


def test_read_notebook_rejects_what_is_not_a_v4_notebook(tmp_path):
    bad = tmp_path / "bad.ipynb"
    bad.write_text("{not json")
    with pytest.raises(GaplabsError, match="not JSON"):
        read_notebook(bad)
    bad.write_text(json.dumps({"cells": [], "nbformat": 3}))
    with pytest.raises(GaplabsError, match="format 3"):
        read_notebook(bad)
    with pytest.raises(GaplabsError, match="does not exist"):
        read_notebook(tmp_path / "missing.ipynb")


# ---------------------------------------------------------------------------------------------
# Release on a lab folder


@pytest.fixture
def scaffold_root(tmp_path, monkeypatch) -> Path:
    """A pack root holding one scaffolded lab 'demo-lab', found by `find_lab` through the env."""
    root = tmp_path / "root"
    new_lab("demo-lab", root=root)
    monkeypatch.setenv(EXTRA_ROOTS_ENV, str(root))
    monkeypatch.setenv(HOME_ENV, str(tmp_path / "home"))
    return root


def demo_lab(root: Path) -> Lab:
    return Lab(dir=root / "labs" / "demo-lab", root=root, origin="test")


def test_release_is_deterministic_and_only_writes_when_the_solution_changed(scaffold_root):
    lab = demo_lab(scaffold_root)
    first = lab.starter_path.read_bytes()
    again = release(lab)
    assert not again.changed and lab.starter_path.read_bytes() == first
    assert starter_sync_problem(lab) is None

    solution = json.loads(lab.solution_path.read_text())
    solution["cells"][0]["source"] = "# A new title\n"
    lab.solution_path.write_text(json.dumps(solution))
    assert "differs from what the solution generates" in starter_sync_problem(lab)
    assert release(lab, write=False).changed
    assert lab.starter_path.read_bytes() == first, "write=False must not touch the starter"
    assert release(lab).changed
    assert starter_sync_problem(lab) is None
    assert "# A new title" in lab.starter_path.read_text()


def test_sync_problem_when_the_starter_is_missing(scaffold_root):
    lab = demo_lab(scaffold_root)
    lab.starter_path.unlink()
    assert "no starter" in starter_sync_problem(lab)


def test_cli_release_check_exits_1_when_stale_and_release_fixes_it(scaffold_root):
    lab = demo_lab(scaffold_root)
    app = typer.Typer()
    register(app)
    runner = CliRunner()
    assert runner.invoke(app, ["release", "--check", "demo-lab"]).exit_code == 0
    lab.starter_path.write_text(lab.starter_path.read_text().replace("Implement", "Write"))
    stale = runner.invoke(app, ["release", "--check", "demo-lab"])
    assert stale.exit_code == 1 and "out of sync" in stale.output
    fixed = runner.invoke(app, ["release", "demo-lab"])
    assert fixed.exit_code == 0 and "wrote" in fixed.output
    assert starter_sync_problem(lab) is None


# ---------------------------------------------------------------------------------------------
# Mutants


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_mutant_header_is_parsed(tmp_path):
    path = write(
        tmp_path / "m.py",
        "# catches: a, b\n# catches: c\n# why: forgets the scale\n#   and more\n\ndef f():\n    return 0\n# catches: late\n",
    )
    mutant = parse_mutant(path, check_ids={"a", "b", "c", "late"})
    assert mutant.catches == ("a", "b", "c")
    assert mutant.why == "forgets the scale"
    assert mutant.name == "m"
    assert mutant.source == path.read_text()


def test_mutant_without_catches_is_refused(tmp_path):
    path = write(tmp_path / "m.py", "# why: nobody said\ndef f():\n    return 0\n")
    with pytest.raises(LabFormatError, match="which checks catch it"):
        parse_mutant(path)


def test_mutant_naming_an_unknown_check_is_refused(tmp_path):
    path = write(tmp_path / "m.py", "# catches: sdpa_matches_torch, typo_check\ndef f():\n    return 0\n")
    with pytest.raises(LabFormatError, match="'typo_check'") as raised:
        parse_mutant(path, check_ids={"sdpa_matches_torch", "module_matches_torch"})
    assert "module_matches_torch" in raised.value.fix


def test_mutant_with_a_syntax_error_is_refused_with_its_line(tmp_path):
    path = write(tmp_path / "m.py", "# catches: a\n\ndef f(:\n")
    with pytest.raises(LabFormatError, match="not valid Python") as raised:
        parse_mutant(path, check_ids={"a"})
    assert raised.value.where.endswith("line 3")


# ---------------------------------------------------------------------------------------------
# `labs new`


def test_new_lab_scaffolds_every_file_and_they_agree(scaffold_root):
    lab = demo_lab(scaffold_root)
    spec = lab.spec
    assert spec.id == "demo-lab" and spec.title == "Demo lab"
    for path in (
        lab.dir / "lab.yaml",
        lab.checks_dir / "test_softmax.py",
        lab.mutants_dir / "no_max_subtraction.py",
        lab.solution_path,
        lab.starter_path,
    ):
        assert path.is_file(), path
    assert starter_sync_problem(lab) is None
    (mutant,) = load_mutants(lab)
    assert mutant.catches == ("softmax_is_stable",) and mutant.why
    nbformat.validate(nbformat.read(lab.starter_path, as_version=4))
    nbformat.validate(nbformat.read(lab.solution_path, as_version=4))
    starter = lab.starter_path.read_text()
    assert "amax" not in starter and "BEGIN SOLUTION" not in starter
    for path in (lab.dir / "lab.yaml", lab.checks_dir / "test_softmax.py", lab.mutants_dir / "no_max_subtraction.py"):
        assert path.read_text().lstrip().startswith(("#", '"""')), (
            f"{path.name} should open with a comment explaining it"
        )


def test_new_lab_refuses_to_overwrite_and_rejects_bad_ids(scaffold_root):
    before = (scaffold_root / "labs" / "demo-lab" / "lab.yaml").read_bytes()
    with pytest.raises(GaplabsError, match="never overwrites"):
        new_lab("demo-lab", root=scaffold_root)
    assert (scaffold_root / "labs" / "demo-lab" / "lab.yaml").read_bytes() == before
    (scaffold_root / "solutions" / "orphan").mkdir(parents=True)
    with pytest.raises(GaplabsError, match="never overwrites"):
        new_lab("orphan", root=scaffold_root)
    assert not (scaffold_root / "labs" / "orphan").exists()
    for bad in ("Demo", "demo_lab", "-demo", "demo--lab"):
        with pytest.raises(GaplabsError, match="not a lab id"):
            new_lab(bad, root=scaffold_root)


def test_cli_new_creates_the_lab_under_root(tmp_path):
    app = typer.Typer()
    register(app)
    result = CliRunner().invoke(
        app, ["new", "my-first-lab", "--root", str(tmp_path), "--title", "My first lab: softmax"]
    )
    assert result.exit_code == 0, result.output
    lab = Lab(dir=tmp_path / "labs" / "my-first-lab", root=tmp_path, origin="test")
    assert lab.spec.title == "My first lab: softmax"
    assert starter_sync_problem(lab) is None
    from cli import app as labs_app  # the real `labs` app: GaplabsError -> message, exit code 2

    again = CliRunner().invoke(labs_app, ["new", "my-first-lab", "--root", str(tmp_path)])
    assert again.exit_code == 2 and "never overwrites" in again.output, again.output


def test_cli_release_reports_a_broken_solution_and_still_releases_the_others(scaffold_root):
    from cli import app  # the real `labs` app

    new_lab("second-lab", root=scaffold_root)
    good = demo_lab(scaffold_root)
    good.starter_path.unlink()
    broken = scaffold_root / "solutions" / "second-lab" / "solution.ipynb"
    solution = json.loads(broken.read_text())
    solution["cells"][2]["source"] = [line for line in solution["cells"][2]["source"] if "END SOLUTION" not in line]
    broken.write_text(json.dumps(solution))
    result = CliRunner().invoke(app, ["release", "second-lab", "demo-lab"])
    assert result.exit_code == 2, result.output
    assert (
        "never closed" in result.output
        and "solutions/second-lab/solution.ipynb, cell 3 (id softmax), line 3" in result.output
    )
    assert starter_sync_problem(good) is None, "the good lab is released although the other one is broken"
