"""Batch reports for CI: JSON, JUnit XML, the gradebook (CSV + JSON), Gradescope and GitHub summaries.

Input is the report dict the engine produces for one graded submission:

    {lab, lab_version, submission, device, score, max_score, passed, duration_s,
     checks: [{id, title, points, max_points, status, message}]}

with status one of passed, failed, error, timeout, skipped (skipped checks are out of max_score).
Extra keys are ignored. Every writer is atomic (grader.atomic): a CI job killed mid-write leaves
the previous file or the new one, never half a file that a later step would misread.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from pathlib import Path

from grader.atomic import atomic_write_text
from grader.errors import GaplabsError

STATUSES = ("passed", "failed", "error", "timeout", "skipped")
GRADEBOOK_FORMAT = "gaplabs-gradebook/1"
FIXED_COLUMNS = ("submission", "lab", "score", "max_score", "passed", "status", "duration_s")
MAX_MESSAGE_CHARS = 20_000  # student output can be megabytes; a CI report must stay readable
SUMMARY_MAX_ROWS = 100  # GitHub caps a step summary at 1 MiB; the gradebook artifact has every row


# ---------------------------------------------------------------- small helpers


def _number(value: object) -> float:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return 0.0
    return number if math.isfinite(number) else 0.0


def _points_text(value: float | None) -> str:
    """2.0 -> "2", 0.5 -> "0.5", None -> "" (a skipped check has no points)."""
    if value is None:
        return ""
    value = round(float(value), 4)
    return str(int(value)) if value.is_integer() else f"{value:g}"


def _checks(report: dict) -> list[dict]:
    return [check for check in report.get("checks") or [] if isinstance(check, dict)]


def _report_error(report: dict) -> str | None:
    """A submission-level problem (unreadable notebook, crash before the checks), or None."""
    return report.get("error") or report.get("lab_error") or None


def submission_status(report: dict) -> str:
    """"ok" (full marks), "failed" (lost points), or "error" (grading hit an error, a timeout or a crash).

    "error" wins over "failed": an instructor should look at those submissions by hand, because
    a crash or a timeout can hide points the student earned.
    """
    if _report_error(report) or any(check.get("status") in ("error", "timeout") for check in _checks(report)):
        return "error"
    if report.get("passed") is not None:
        return "ok" if report["passed"] else "failed"
    return "ok" if _number(report.get("score")) >= _number(report.get("max_score")) else "failed"


def _one_line(text: str, limit: int = 200) -> str:
    first = (text or "").strip().splitlines()[0] if (text or "").strip() else ""
    return first if len(first) <= limit else first[: limit - 1] + "…"


def _clip(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    text = text or ""
    return text if len(text) <= limit else text[:limit] + f"\n… ({len(text) - limit} more characters cut)"


def _write_text(path: Path | str, text: str) -> None:
    """Atomic UTF-8 write; a file name undecodable as UTF-8 (a lone surrogate in Python) becomes "?"."""
    atomic_write_text(path, text.encode("utf-8", "replace").decode("utf-8"))


def _sort_key(report: dict) -> str:
    return str(report.get("submission", ""))


# ---------------------------------------------------------------- JSON


def _json_default(value: object) -> object:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (set, tuple)):
        return list(value)
    return repr(value)


def write_json(reports: list[dict] | dict, path: Path | str) -> None:
    """The engine's report(s) as JSON, unchanged apart from making odd values (paths, nan) plain text."""
    text = json.dumps(_finite(reports), indent=2, default=_json_default, ensure_ascii=False)
    _write_text(path, text + "\n")


def _finite(value: object) -> object:
    """JSON has no nan or inf: strict parsers (GitHub, jq) reject them, so they become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


# ---------------------------------------------------------------- JUnit XML

# XML 1.0 forbids most control characters; a student's print("\x1b[31m") must not break the file.
_XML_ILLEGAL = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _xml_text(text: object) -> str:
    return _XML_ILLEGAL.sub("\N{REPLACEMENT CHARACTER}", _clip(str(text or "")))


def _junit_suite(report: dict) -> ET.Element:
    lab = str(report.get("lab", "lab"))
    name = str(report.get("submission", "submission"))
    # Viewers split classname on dots into packages; keep the submission one level deep.
    classname = _xml_text(f"{lab}.{name.replace('.', '_')}")
    checks = _checks(report)
    if not checks:  # the engine could not grade at all (unreadable notebook, crash before the checks)
        checks = [{"id": "grading", "title": "grading", "points": 0, "max_points": 0, "status": "error",
                   "message": _report_error(report) or "no checks ran for this submission"}]
    counts = {status: sum(check.get("status") == status for check in checks) for status in STATUSES}
    suite = ET.Element("testsuite", {
        "name": _xml_text(f"{lab}/{name}"),
        "tests": str(len(checks)),
        "failures": str(counts["failed"]),
        "errors": str(counts["error"] + counts["timeout"] + sum(c.get("status") not in STATUSES for c in checks)),
        "skipped": str(counts["skipped"]),
        "time": f"{_number(report.get('duration_s')):.3f}",
    })
    properties = ET.SubElement(suite, "properties")
    for key in ("lab_version", "device", "score", "max_score"):
        if key in report:
            ET.SubElement(properties, "property", {"name": key, "value": _xml_text(report[key])})
    for check in checks:
        case = ET.SubElement(suite, "testcase", {
            "classname": classname,
            "name": _xml_text(check.get("id", "?")),
            "time": f"{_number(check.get('duration_s')):.3f}",
        })
        status = check.get("status")
        if status == "passed":
            continue
        message = str(check.get("message") or "")
        detail = (f"{check.get('title', '')}\npoints: {_points_text(_number(check.get('points')))}"
                  f"/{_points_text(_number(check.get('max_points')))}\n\n{message}")
        if status == "skipped":
            ET.SubElement(case, "skipped", {"message": _xml_text(_one_line(message) or "skipped")})
            continue
        tag = "failure" if status == "failed" else "error"
        kind = status if status in STATUSES else f"unknown status {status!r}"
        element = ET.SubElement(case, tag, {"type": kind, "message": _xml_text(_one_line(message) or kind)})
        element.text = _xml_text(detail)
    return suite


def write_junit(reports: list[dict], path: Path | str) -> None:
    """JUnit XML: one <testsuite> per submission, one <testcase> per check (classname lab.submission)."""
    reports = sorted(reports, key=_sort_key)
    suites = [_junit_suite(report) for report in reports]
    root = ET.Element("testsuites", {"name": "gaplabs " + ", ".join(sorted({str(r.get("lab", "")) for r in reports}))})
    for key in ("tests", "failures", "errors", "skipped"):
        root.set(key, str(sum(int(suite.get(key, "0")) for suite in suites)))
    root.set("time", f"{sum(float(suite.get('time', '0')) for suite in suites):.3f}")
    root.extend(suites)
    ET.indent(root)
    text = ET.tostring(root, encoding="unicode", xml_declaration=False)
    _write_text(path, '<?xml version="1.0" encoding="UTF-8"?>\n' + text + "\n")


# ---------------------------------------------------------------- gradebook


def _check_columns(check_ids: Iterable[str]) -> dict[str, str]:
    """Column name per check id: the id itself, or "check_<id>" when it clashes with a fixed column."""
    return {check_id: (f"check_{check_id}" if check_id in FIXED_COLUMNS else check_id) for check_id in check_ids}


def _gradebook_row(report: dict) -> dict:
    points = {}
    for check in _checks(report):
        points[str(check.get("id"))] = None if check.get("status") == "skipped" else _number(check.get("points"))
    return {
        "submission": str(report.get("submission", "")),
        "lab": str(report.get("lab", "")),
        "score": _number(report.get("score")),
        "max_score": _number(report.get("max_score")),
        "passed": bool(report["passed"]) if report.get("passed") is not None
        else _number(report.get("score")) >= _number(report.get("max_score")),
        "status": submission_status(report),
        "duration_s": round(_number(report.get("duration_s")), 3),
        "points": points,
    }


def _gradebook_checks(reports: list[dict]) -> list[dict]:
    """Every check id in first-seen order (the lab.yaml order), with its title and full points."""
    seen: dict[str, dict] = {}
    for report in reports:
        for check in _checks(report):
            check_id = str(check.get("id"))
            if check_id not in seen or (seen[check_id]["max_points"] == 0 and check.get("status") != "skipped"):
                seen[check_id] = {"id": check_id, "title": str(check.get("title", check_id)),
                                  "max_points": _number(check.get("max_points"))}
    return list(seen.values())


def _summary(rows: list[dict]) -> dict:
    count = len(rows)
    fractions = [row["score"] / row["max_score"] for row in rows if row["max_score"] > 0]
    return {
        "submissions": count,
        "ok": sum(row["status"] == "ok" for row in rows),
        "failed": sum(row["status"] == "failed" for row in rows),
        "error": sum(row["status"] == "error" for row in rows),
        "mean_score": round(sum(row["score"] for row in rows) / count, 4) if count else None,
        "mean_fraction": round(sum(fractions) / len(fractions), 4) if fractions else None,
    }


def _write_gradebook_data(book: dict, csv_path: Path | str, json_path: Path | str) -> None:
    columns = _check_columns(check["id"] for check in book["checks"])
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([*FIXED_COLUMNS, *columns.values()])
    for row in book["submissions"]:
        writer.writerow([
            row["submission"], row["lab"], _points_text(row["score"]), _points_text(row["max_score"]),
            "true" if row["passed"] else "false", row["status"], f"{row['duration_s']:.3f}",
            *(_points_text(row["points"].get(check_id)) for check_id in columns),
        ])
    _write_text(csv_path, buffer.getvalue())
    _write_text(json_path, json.dumps(book, indent=2, ensure_ascii=False) + "\n")


def _book(rows: list[dict], checks: list[dict], lab: str | None, lab_version: str | None) -> dict:
    rows = sorted(rows, key=lambda row: row["submission"])
    return {"format": GRADEBOOK_FORMAT, "lab": lab, "lab_version": lab_version, "checks": checks,
            "summary": _summary(rows), "submissions": rows}


def gradebook_from_reports(reports: list[dict], *, lab: str | None = None, lab_version: str | None = None,
                           where: str = "the batch") -> dict:
    """The gradebook (the JSON written beside the CSV) of one lab's reports."""
    labs = {str(report.get("lab")) for report in reports}
    if len(labs) > 1:
        raise GaplabsError(f"one gradebook holds one lab, these reports are from {sorted(labs)}",
                           where=where, fix="write one gradebook per lab")
    lab = lab or (labs.pop() if labs else None)
    versions = {str(report.get("lab_version")) for report in reports if report.get("lab_version") is not None}
    lab_version = lab_version or (versions.pop() if len(versions) == 1 else None)
    return _book([_gradebook_row(report) for report in reports], _gradebook_checks(reports), lab, lab_version)


def write_gradebook(reports: list[dict], csv_path: Path | str, json_path: Path | str, *,
                    lab: str | None = None, lab_version: str | None = None) -> None:
    """One row per submission: submission, lab, score, max_score, passed, status, duration_s, points per check.

    A skipped check (needs CUDA, graded on CPU) has an empty cell, not 0: it did not count.
    `lab` names the lab when `reports` is empty (an empty shard), so a later merge can still check it.
    """
    book = gradebook_from_reports(reports, lab=lab, lab_version=lab_version, where=str(csv_path))
    _write_gradebook_data(book, csv_path, json_path)


def _json_sibling(path: Path) -> Path:
    if path.suffix == ".json":
        return path
    if path.suffix == ".csv":
        return path.with_suffix(".json")
    return path.with_name(path.name + ".json")  # a --gradebook prefix


def read_gradebook(path: Path | str) -> dict:
    """A gradebook JSON, given its path, the CSV's path beside it, or the --gradebook prefix."""
    path = Path(path)
    json_path = _json_sibling(path)
    try:
        book = json.loads(json_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise GaplabsError("no gradebook JSON found", where=str(json_path),
                           fix="pass the .json that `labs grade --gradebook PREFIX` wrote (PREFIX.json)") from None
    except json.JSONDecodeError as exc:
        raise GaplabsError(f"the gradebook is not valid JSON ({exc.msg}, line {exc.lineno})", where=str(json_path),
                           fix="regenerate it with `labs grade --gradebook`") from None
    if not isinstance(book, dict) or book.get("format") != GRADEBOOK_FORMAT:
        raise GaplabsError(f"not a gaplabs gradebook (expected format {GRADEBOOK_FORMAT!r})", where=str(json_path),
                           fix="pass a gradebook written by `labs grade --gradebook` or `labs gradebook merge`")
    return book


def merge_gradebooks(paths: list[Path], out_csv: Path | str, out_json: Path | str) -> dict:
    """Join shard gradebooks of one lab into one; refuses mixed labs, lab versions or repeated submissions."""
    if not paths:
        raise GaplabsError("no gradebooks to merge", fix="pass the shard gradebooks, e.g. shards/*.json")
    rows: list[dict] = []
    checks: dict[str, dict] = {}
    owner: dict[str, Path] = {}
    lab = lab_version = None
    lab_from = version_from = None
    for path in paths:
        book = read_gradebook(path)
        if book.get("lab"):
            if lab and book["lab"] != lab:
                raise GaplabsError(f"cannot merge gradebooks of different labs: {lab!r} and {book['lab']!r}",
                                   where=f"{lab_from} and {path}", fix="merge the shards of one lab at a time")
            lab, lab_from = book["lab"], lab_from or path
        if book.get("lab_version"):
            if lab_version and book["lab_version"] != lab_version:
                raise GaplabsError(
                    f"cannot merge gradebooks of lab versions {lab_version!r} and {book['lab_version']!r}",
                    where=f"{version_from} and {path}", fix="regrade every shard with the same version of the lab")
            lab_version, version_from = book["lab_version"], version_from or path
        for check in book.get("checks", []):
            checks.setdefault(check["id"], check)
        for row in book.get("submissions", []):
            name = row["submission"]
            if name in owner:
                raise GaplabsError(f"submission {name!r} appears in two gradebooks",
                                   where=f"{owner[name]} and {path}",
                                   fix="shard with `--shard i/n` over the same submissions folder so each lands once")
            owner[name] = path
            rows.append(row)
    book = _book(rows, list(checks.values()), lab, lab_version)
    _write_gradebook_data(book, out_csv, out_json)
    return book


def check_thresholds(book: dict, *, min_average: float | None = None, min_pass_rate: float | None = None,
                     max_errors: int | None = None) -> list[str]:
    """The thresholds a gradebook misses, as sentences (empty list: all met). Fractions are 0..1."""
    for name, value in (("min_average", min_average), ("min_pass_rate", min_pass_rate)):
        if value is not None and not 0 <= value <= 1:
            raise GaplabsError(f"--{name.replace('_', '-')} is {value}, expected a fraction from 0 to 1",
                               fix=f"60% is written 0.6, e.g. --{name.replace('_', '-')} 0.6")
    rows = book.get("submissions", [])
    summary = _summary(rows)
    missed = []
    if not rows:
        return ["the gradebook has no submissions (wrong --submissions folder, or an empty shard?)"]
    if min_average is not None and (summary["mean_fraction"] or 0) < min_average:
        missed.append(f"class average {summary['mean_fraction'] or 0:.1%} of the points is below {min_average:.1%}")
    pass_rate = summary["ok"] / len(rows)
    if min_pass_rate is not None and pass_rate < min_pass_rate:
        missed.append(f"{summary['ok']}/{len(rows)} submissions ({pass_rate:.1%}) have full marks, "
                      f"below the required {min_pass_rate:.1%}")
    if max_errors is not None and summary["error"] > max_errors:
        names = ", ".join(row["submission"] for row in rows if row["status"] == "error")
        missed.append(f"{summary['error']} submissions hit grading errors or timeouts (allowed {max_errors}): {names}")
    return missed


# ---------------------------------------------------------------- Gradescope


def write_gradescope(report: dict, path: Path | str) -> None:
    """Gradescope's autograder results.json for one submission (tests: passed/failed only).

    Gradescope knows no "skipped": checks skipped here (CUDA-only on a CPU grader) are left out of
    the tests and named in the top-level output, matching their absence from max_score.
    """
    tests = []
    skipped = []
    for number, check in enumerate(_checks(report), start=1):
        status = check.get("status")
        if status == "skipped":
            skipped.append(str(check.get("id")))
            continue
        message = str(check.get("message") or "")
        if status in ("error", "timeout"):
            message = f"{'timed out' if status == 'timeout' else 'error while grading'}: {message}"
        tests.append({
            "name": f"{check.get('title', check.get('id'))} ({check.get('id')})",
            "name_format": "text",
            "number": str(number),
            "score": _number(check.get("points")),
            "max_score": _number(check.get("max_points")),
            "status": "passed" if status == "passed" else "failed",
            "output": _clip(message),
            "output_format": "text",
            "visibility": "visible",
        })
    output = (f"{report.get('lab')} {report.get('lab_version', '')}: "
              f"{_points_text(_number(report.get('score')))}/{_points_text(_number(report.get('max_score')))} points")
    if skipped:
        output += f"\nnot graded on this {report.get('device', 'device')} (not counted): {', '.join(skipped)}"
    if _report_error(report):
        output += f"\n{_report_error(report)}"
    results = {
        "score": _number(report.get("score")),
        "execution_time": int(round(_number(report.get("duration_s")))),
        "output": output,
        "output_format": "text",
        "visibility": "visible",
        "stdout_visibility": "hidden",
        "tests": tests,
    }
    _write_text(path, json.dumps(results, indent=2, ensure_ascii=False) + "\n")


# ---------------------------------------------------------------- GitHub step summary


def _md(text: object) -> str:
    """One Markdown table cell: no pipes or newlines that would break the row."""
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ").replace("\r", " ")


def summary_markdown(book: dict) -> str:
    """A gradebook as Markdown: counts, per-check pass rates, then the submissions, worst first."""
    rows = sorted(book.get("submissions", []), key=lambda row: (row["status"] == "ok", row["submission"]))
    lines = [f"### gaplabs: {_md(book.get('lab') or 'no lab')}", ""]
    if not rows:
        return "\n".join(lines + ["No submissions were graded.", ""])
    summary = _summary(rows)
    average = f"{summary['mean_fraction']:.1%}" if summary["mean_fraction"] is not None else "n/a"
    lines += [f"{len(rows)} submissions: {summary['ok']} full marks, {summary['failed']} lost points, "
              f"{summary['error']} with grading errors; class average {average}.", ""]
    checks = book.get("checks", [])
    lines += ["| Check | Full marks | Average points |", "|---|---|---|"]
    for check in checks:
        graded = [row["points"][check["id"]] for row in rows if row["points"].get(check["id"]) is not None]
        full = sum(points >= check["max_points"] for points in graded)
        mean = sum(graded) / len(graded) if graded else 0.0
        lines.append(f"| {_md(check['title'])} (`{_md(check['id'])}`) | {full}/{len(graded)} "
                     f"| {_points_text(round(mean, 2))}/{_points_text(check['max_points'])} |")
    full_points = {check["id"]: check["max_points"] for check in checks}
    lines += ["", "| Submission | Score | Status | Lost points on | Time |", "|---|---|---|---|---|"]
    for row in rows[:SUMMARY_MAX_ROWS]:
        lost = [check_id for check_id, points in row["points"].items()
                if points is not None and points < full_points.get(check_id, 0)]
        lines.append(f"| {_md(row['submission'])} | {_points_text(row['score'])}/{_points_text(row['max_score'])} "
                     f"| {row['status']} | {_md(', '.join(lost)) or '-'} | {row['duration_s']:.1f} s |")
    if len(rows) > SUMMARY_MAX_ROWS:
        lines.append(f"\n… and {len(rows) - SUMMARY_MAX_ROWS} more submissions (see the gradebook artifact).")
    return "\n".join(lines) + "\n"


def append_step_summary(markdown: str) -> bool:
    """Append to $GITHUB_STEP_SUMMARY when set; returns whether it wrote.

    Appending (not an atomic replace) is the contract GitHub documents: other steps' summaries share the file.
    """
    target = os.environ.get("GITHUB_STEP_SUMMARY")
    if not target:
        return False
    with open(target, "a", encoding="utf-8", errors="replace") as handle:
        handle.write(markdown + "\n")
    return True


def append_github_summary(reports: list[dict]) -> bool:
    """The batch's Markdown summary appended to $GITHUB_STEP_SUMMARY when that variable is set."""
    return append_step_summary(summary_markdown(gradebook_from_reports(reports)))


# ---------------------------------------------------------------- shards


def parse_shard(text: str) -> tuple[int, int]:
    """"2/4" -> (2, 4): the second of four shards, 1-based like a CI matrix index."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(text))
    if not match:
        raise GaplabsError(f"--shard {text!r} is not of the form i/n", where="--shard",
                           fix="write e.g. --shard 2/4 for the second of four shards (1-based)")
    index, count = int(match.group(1)), int(match.group(2))
    if count < 1 or not 1 <= index <= count:
        raise GaplabsError(f"--shard {text!r} is out of range: the index must be 1 to {max(count, 1)}", where="--shard",
                           fix="shards count from 1: with 4 shards use 1/4, 2/4, 3/4 and 4/4")
    return index, count


def _item_name(item: object) -> tuple[str, str]:
    return (getattr(item, "name", None) or str(item), str(item))


def shard(items: list, index: int, count: int) -> list:
    """The `index`-th of `count` shards (1-based): sort by file name, then take every count-th item.

    Round-robin over the sorted names gives shards whose sizes differ by at most one and needs no
    coordination: every matrix job computes its own slice from the same checkout. The trade-off:
    adding a submission moves later ones to other shards, so only compare shards of one run.
    """
    if count < 1 or not 1 <= index <= count:
        raise GaplabsError(f"shard {index}/{count} is out of range", where="--shard",
                           fix="shards count from 1: with 4 shards use 1/4, 2/4, 3/4 and 4/4")
    return sorted(items, key=_item_name)[index - 1 :: count]
