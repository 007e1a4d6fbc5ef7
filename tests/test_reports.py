"""Batch reports: JUnit XML, gradebooks and their merge, Gradescope, GitHub summaries, shards."""

from __future__ import annotations

import csv
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from grader import reports
from grader.errors import GaplabsError


def check(check_id: str, status: str, points: float, max_points: float, message: str = "") -> dict:
    return {"id": check_id, "title": f"title of {check_id}", "points": points, "max_points": max_points,
            "status": status, "message": message}


def report(name: str, checks: list[dict], *, lab: str = "attention-from-scratch", version: str = "1.0.0") -> dict:
    counted = [c for c in checks if c["status"] != "skipped"]
    score = sum(c["points"] for c in counted)
    max_score = sum(c["max_points"] for c in counted)
    return {"lab": lab, "lab_version": version, "submission": name, "device": "cpu", "score": score,
            "max_score": max_score, "passed": score == max_score, "duration_s": 1.25, "checks": checks,
            "notes": ["extra keys are ignored"]}


@pytest.fixture
def batch() -> list[dict]:
    return [
        report("carol", [check("sdpa", "passed", 2, 2), check("module", "passed", 3, 3), check("gpu", "skipped", 0, 1, "needs CUDA")]),
        report("alice", [check("sdpa", "failed", 0, 2, "expected 1/sqrt(d) scaling\ngot max error 3.2"),
                         check("module", "passed", 3, 3), check("gpu", "skipped", 0, 1, "needs CUDA")]),
        report("bob.v2", [check("sdpa", "timeout", 0, 2, "ran past 20 s"),
                          check("module", "error", 0, 3, "SubmissionCrashed: \x00\x1b[31mboom</failure>"),
                          check("gpu", "skipped", 0, 1, "needs CUDA")]),
    ]


# ---------------------------------------------------------------- JUnit


def test_junit_has_one_suite_per_submission_and_one_case_per_check(tmp_path: Path, batch: list[dict]) -> None:
    out = tmp_path / "reports" / "junit.xml"
    reports.write_junit(batch, out)
    root = ET.parse(out).getroot()  # parses: control characters and "</failure>" were escaped or replaced
    assert root.tag == "testsuites"
    suites = root.findall("testsuite")
    assert [s.get("name") for s in suites] == ["attention-from-scratch/alice", "attention-from-scratch/bob.v2",
                                               "attention-from-scratch/carol"]
    assert root.get("tests") == "9" and root.get("failures") == "1" and root.get("errors") == "2" and root.get("skipped") == "3"

    alice = {case.get("name"): case for case in suites[0].findall("testcase")}
    assert set(alice) == {"sdpa", "module", "gpu"}
    assert alice["sdpa"].get("classname") == "attention-from-scratch.alice"
    failure = alice["sdpa"].find("failure")
    assert failure is not None and failure.get("message") == "expected 1/sqrt(d) scaling"
    assert "got max error 3.2" in failure.text and "points: 0/2" in failure.text
    assert alice["module"].find("failure") is None and alice["module"].find("error") is None
    assert alice["gpu"].find("skipped").get("message") == "needs CUDA"

    bob = {case.get("name"): case for case in suites[1].findall("testcase")}
    assert bob["sdpa"].get("classname") == "attention-from-scratch.bob_v2"  # a dot would nest it in viewers
    assert bob["sdpa"].find("error").get("type") == "timeout"
    crash = bob["module"].find("error")
    assert crash.get("type") == "error" and "boom</failure>" in crash.text and "\x00" not in crash.text


def test_junit_reports_a_submission_that_could_not_be_graded(tmp_path: Path) -> None:
    broken = {"lab": "lab-a", "submission": "mallory", "score": 0, "max_score": 5, "passed": False,
              "duration_s": 0.1, "checks": [], "error": "notebook is not valid JSON"}
    reports.write_junit([broken], tmp_path / "junit.xml")
    case = ET.parse(tmp_path / "junit.xml").getroot().find("testsuite/testcase")
    assert case.get("name") == "grading" and case.find("error").get("message") == "notebook is not valid JSON"


def test_junit_survives_odd_file_names(tmp_path: Path) -> None:
    odd = report("eve\x07\udcff", [check("sdpa", "failed", 0, 2, "bad")])  # a file name undecodable as UTF-8
    reports.write_junit([odd], tmp_path / "junit.xml")
    assert ET.parse(tmp_path / "junit.xml").getroot().find("testsuite").get("name").startswith("attention-from-scratch/eve")
    reports.write_gradebook([odd], tmp_path / "g.csv", tmp_path / "g.json")
    reports.write_json([odd], tmp_path / "r.json")
    assert read_csv(tmp_path / "g.csv")[0]["submission"].startswith("eve")
    assert json.loads((tmp_path / "r.json").read_text())[0]["submission"].startswith("eve")


def test_junit_clips_huge_messages(tmp_path: Path) -> None:
    flood = report("spammer", [check("sdpa", "failed", 0, 2, "x" * 1_000_000)])
    reports.write_junit([flood], tmp_path / "junit.xml")
    assert (tmp_path / "junit.xml").stat().st_size < 100_000


# ---------------------------------------------------------------- JSON


def test_write_json_round_trips_and_turns_nan_into_null(tmp_path: Path, batch: list[dict]) -> None:
    batch[0]["duration_s"] = float("nan")
    reports.write_json(batch, tmp_path / "out.json")
    text = (tmp_path / "out.json").read_text()
    assert "NaN" not in text
    loaded = json.loads(text)
    assert loaded[0]["duration_s"] is None and loaded[1]["checks"][0]["message"].startswith("expected")
    reports.write_json(batch[1], tmp_path / "one.json")
    assert json.loads((tmp_path / "one.json").read_text())["submission"] == "alice"


# ---------------------------------------------------------------- gradebook


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_gradebook_rows_statuses_and_per_check_points(tmp_path: Path, batch: list[dict]) -> None:
    reports.write_gradebook(batch, tmp_path / "gb.csv", tmp_path / "gb.json")
    rows = read_csv(tmp_path / "gb.csv")
    assert list(rows[0]) == ["submission", "lab", "score", "max_score", "passed", "status", "duration_s", "sdpa", "module", "gpu"]
    by_name = {row["submission"]: row for row in rows}
    assert [row["submission"] for row in rows] == ["alice", "bob.v2", "carol"]
    assert by_name["carol"]["status"] == "ok" and by_name["carol"]["passed"] == "true" and by_name["carol"]["score"] == "5"
    assert by_name["alice"]["status"] == "failed" and by_name["alice"]["sdpa"] == "0" and by_name["alice"]["module"] == "3"
    assert by_name["bob.v2"]["status"] == "error"
    assert by_name["carol"]["gpu"] == ""  # skipped: not counted, not zero
    book = json.loads((tmp_path / "gb.json").read_text())
    assert book["lab"] == "attention-from-scratch" and book["lab_version"] == "1.0.0"
    assert [c["id"] for c in book["checks"]] == ["sdpa", "module", "gpu"]
    assert book["summary"] == {"submissions": 3, "ok": 1, "failed": 1, "error": 1, "mean_score": round(8 / 3, 4),
                               "mean_fraction": round((1 + 0.6 + 0) / 3, 4)}


def test_gradebook_renames_a_check_column_that_clashes(tmp_path: Path) -> None:
    reports.write_gradebook([report("a", [check("score", "passed", 1, 1)])], tmp_path / "g.csv", tmp_path / "g.json")
    assert "check_score" in read_csv(tmp_path / "g.csv")[0]


def test_merge_joins_shards_and_keeps_every_row(tmp_path: Path, batch: list[dict]) -> None:
    for index in (1, 2, 3):
        part = reports.shard(batch, index, 3)
        reports.write_gradebook(part, tmp_path / f"s{index}.csv", tmp_path / f"s{index}.json")
    reports.write_gradebook([], tmp_path / "empty.csv", tmp_path / "empty.json", lab="attention-from-scratch")
    paths = [tmp_path / "s2.json", tmp_path / "s1.csv", tmp_path / "s3", tmp_path / "empty.json"]
    merged = reports.merge_gradebooks(paths, tmp_path / "all.csv", tmp_path / "all.json")
    reports.write_gradebook(batch, tmp_path / "direct.csv", tmp_path / "direct.json")
    assert (tmp_path / "all.csv").read_text() == (tmp_path / "direct.csv").read_text()
    assert merged["summary"]["submissions"] == 3 and merged["lab"] == "attention-from-scratch"


def test_merge_refuses_duplicates_and_mixed_labs(tmp_path: Path, batch: list[dict]) -> None:
    reports.write_gradebook(batch[:2], tmp_path / "a.csv", tmp_path / "a.json")
    reports.write_gradebook(batch[1:], tmp_path / "b.csv", tmp_path / "b.json")
    with pytest.raises(GaplabsError, match="'alice' appears in two gradebooks") as info:
        reports.merge_gradebooks([tmp_path / "a.json", tmp_path / "b.json"], tmp_path / "m.csv", tmp_path / "m.json")
    assert "a.json" in info.value.where and "b.json" in info.value.where
    other = [report("zed", [check("x", "passed", 1, 1)], lab="kv-cache-math")]
    reports.write_gradebook(other, tmp_path / "c.csv", tmp_path / "c.json")
    with pytest.raises(GaplabsError, match="different labs"):
        reports.merge_gradebooks([tmp_path / "a.json", tmp_path / "c.json"], tmp_path / "m.csv", tmp_path / "m.json")
    newer = [report("yan", [check("sdpa", "passed", 2, 2)], version="2.0.0")]
    reports.write_gradebook(newer, tmp_path / "d.csv", tmp_path / "d.json")
    with pytest.raises(GaplabsError, match="lab versions"):
        reports.merge_gradebooks([tmp_path / "a.json", tmp_path / "d.json"], tmp_path / "m.csv", tmp_path / "m.json")
    assert not (tmp_path / "m.csv").exists()
    with pytest.raises(GaplabsError, match="no gradebook JSON"):
        reports.merge_gradebooks([tmp_path / "missing.json"], tmp_path / "m.csv", tmp_path / "m.json")


def test_thresholds(tmp_path: Path, batch: list[dict]) -> None:
    reports.write_gradebook(batch, tmp_path / "g.csv", tmp_path / "g.json")
    book = reports.read_gradebook(tmp_path / "g")
    assert reports.check_thresholds(book, min_average=0.5, max_errors=1) == []
    missed = reports.check_thresholds(book, min_average=0.6, min_pass_rate=0.5, max_errors=0)
    assert len(missed) == 3 and "53.3%" in missed[0] and "1/3" in missed[1] and "bob.v2" in missed[2]
    with pytest.raises(GaplabsError, match="fraction"):
        reports.check_thresholds(book, min_average=60)
    assert reports.check_thresholds({"submissions": []}, min_average=0.1)  # nothing graded is a failure


# ---------------------------------------------------------------- Gradescope and GitHub


def test_gradescope_results(tmp_path: Path, batch: list[dict]) -> None:
    reports.write_gradescope(batch[2], tmp_path / "results.json")
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["score"] == 0 and results["execution_time"] == 1
    assert [t["status"] for t in results["tests"]] == ["failed", "failed"]  # gradescope has no error/skipped
    assert results["tests"][0]["output"].startswith("timed out") and results["tests"][0]["max_score"] == 2
    assert "gpu" in results["output"]  # the skipped check is named, not silently dropped
    reports.write_gradescope(batch[0], tmp_path / "ok.json")
    assert sum(t["score"] for t in json.loads((tmp_path / "ok.json").read_text())["tests"]) == 5


def test_github_summary_only_when_the_variable_is_set(tmp_path: Path, batch: list[dict], monkeypatch) -> None:
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    assert reports.append_github_summary(batch) is False
    target = tmp_path / "summary.md"
    target.write_text("earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(target))
    batch[1]["submission"] = "alice|pipe"
    assert reports.append_github_summary(batch) is True
    text = target.read_text()
    assert text.startswith("earlier step\n")
    assert "3 submissions: 1 full marks, 1 lost points, 1 with grading errors" in text
    assert "| alice\\|pipe | 3/5 | failed | sdpa |" in text
    assert "| title of sdpa (`sdpa`) | 1/3 | 0.67/2 |" in text


# ---------------------------------------------------------------- shards


def test_shards_partition_deterministically() -> None:
    items = [Path(f"subs/{name}.ipynb") for name in "kdbajcefhgi"]
    shards = [reports.shard(items, index, 4) for index in (1, 2, 3, 4)]
    assert sorted(sum(shards, [])) == sorted(items)  # every item exactly once
    assert [len(s) for s in shards] == [3, 3, 3, 2]
    assert shards[0] == [Path("subs/a.ipynb"), Path("subs/e.ipynb"), Path("subs/i.ipynb")]
    assert reports.shard(list(reversed(items)), 2, 4) == shards[1]  # input order does not matter


@pytest.mark.parametrize("text, expected", [("2/4", (2, 4)), (" 1 / 1 ", (1, 1))])
def test_parse_shard(text: str, expected: tuple[int, int]) -> None:
    assert reports.parse_shard(text) == expected


@pytest.mark.parametrize("text", ["0/4", "5/4", "2", "a/b", "1/0", "-1/4"])
def test_parse_shard_rejects(text: str) -> None:
    with pytest.raises(GaplabsError, match="--shard"):
        reports.parse_shard(text)


# ---------------------------------------------------------------- the CLI: labs gradebook merge | check


def test_cli_gradebook_merge_and_check(tmp_path: Path, batch: list[dict], monkeypatch) -> None:
    from typer.testing import CliRunner

    from cli import app

    summary = tmp_path / "step-summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    reports.write_gradebook(batch[:1], tmp_path / "shard-1.csv", tmp_path / "shard-1.json")
    reports.write_gradebook(batch[1:], tmp_path / "shard-2.csv", tmp_path / "shard-2.json")
    runner = CliRunner()
    merged = runner.invoke(app, ["gradebook", "merge", str(tmp_path / "shard-1.json"), str(tmp_path / "shard-2.json"),
                                 "--out", str(tmp_path / "class")])
    assert merged.exit_code == 0, merged.output
    assert len(read_csv(tmp_path / "class.csv")) == 3 and "3 submissions" in summary.read_text()

    passing = runner.invoke(app, ["gradebook", "check", str(tmp_path / "class.json"), "--min-average", "0.5"])
    assert passing.exit_code == 0, passing.output
    failing = runner.invoke(app, ["gradebook", "check", str(tmp_path / "class"), "--min-average", "0.9", "--max-errors", "0"])
    assert failing.exit_code == 1 and "class average 53.3%" in failing.output and "bob.v2" in failing.output
    usage = runner.invoke(app, ["gradebook", "check", str(tmp_path / "class.json")])
    assert usage.exit_code == 2  # no threshold: a usage error, not a silent pass
    repeat = runner.invoke(app, ["gradebook", "merge", str(tmp_path / "class.json"), str(tmp_path / "shard-2.json"),
                                 "--out", str(tmp_path / "again")])
    assert repeat.exit_code == 2 and "appears in two gradebooks" in repeat.output
