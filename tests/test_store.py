"""The SQLite progress store: what it records, which attempt is best, and that concurrent or killed writers lose nothing."""

from __future__ import annotations

import multiprocessing
import os
import signal
import sqlite3
import time
from pathlib import Path

import pytest

from grader.errors import GaplabsError
from grader.store import SCHEMA_VERSION, ProgressStore


def report(lab: str = "demo-lab", score: float = 1.0, max_score: float = 3.0, **extra) -> dict:
    data = {"lab": lab, "lab_version": "1.0.0", "submission": "/ws/demo-lab/demo-lab.ipynb", "device": "cpu",
            "score": score, "max_score": max_score, "passed": score >= max_score, "duration_s": 1.5,
            "checks": [{"id": "add", "title": "add works", "points": score, "max_points": max_score, "status": "passed"}]}
    data.update(extra)
    return data


def test_the_database_lives_in_the_workspace_and_uses_wal(tmp_path):
    store = ProgressStore(tmp_path)
    store.record_hint("demo-lab", 1)
    assert store.path == tmp_path / ".gaplabs" / "progress.sqlite3"
    with sqlite3.connect(store.path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_reading_a_store_that_does_not_exist_creates_nothing(tmp_path):
    store = ProgressStore(tmp_path / "fresh")
    assert (store.best("demo-lab"), store.attempts("demo-lab"), store.hints_used("demo-lab")) == (None, [], 0)
    assert store.progress() == {} and store.solution_views("demo-lab") == []
    assert not (tmp_path / "fresh").exists()


def test_record_grade_keeps_every_field_and_the_whole_report(tmp_path):
    store = ProgressStore(tmp_path)
    attempt = store.record_grade(report(score=2, max_score=3), "ab" * 32)
    assert (attempt.lab, attempt.lab_version, attempt.score, attempt.max_score) == ("demo-lab", "1.0.0", 2.0, 3.0)
    assert (attempt.passed, attempt.device, attempt.submission_sha256, attempt.duration_s) == (False, "cpu", "ab" * 32, 1.5)
    assert attempt.graded_at.endswith("+00:00"), "times are stored in UTC"
    assert ProgressStore(tmp_path).attempts("demo-lab") == [attempt], "a new store object reads what the first wrote"
    with sqlite3.connect(store.path) as conn:
        stored = conn.execute("SELECT report_json FROM grades").fetchone()[0]
    assert '"checks"' in stored and '"add works"' in stored


def test_a_report_without_score_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="score"):
        ProgressStore(tmp_path).record_grade({"lab": "demo-lab"}, "0" * 64)


def test_best_prefers_a_pass_then_the_highest_fraction_then_the_latest(tmp_path):
    store = ProgressStore(tmp_path)
    assert store.best("demo-lab") is None
    store.record_grade(report(score=1, max_score=4), "a")
    second = store.record_grade(report(score=3, max_score=4), "b")
    store.record_grade(report(score=2, max_score=4), "c")
    assert store.best("demo-lab") == second
    again = store.record_grade(report(score=3, max_score=4), "d")
    assert store.best("demo-lab") == again, "on a tie the latest attempt is the best"
    passed = store.record_grade(report(score=4, max_score=4), "e")
    store.record_grade(report(score=0, max_score=4), "f")
    assert store.best("demo-lab") == passed
    assert store.best("other-lab") is None
    assert [a.submission_sha256 for a in store.attempts("demo-lab")] == list("abcdef"), "attempts are oldest first"


def test_best_compares_fractions_when_the_lab_changed_its_points(tmp_path):
    store = ProgressStore(tmp_path)
    store.record_grade(report(score=3, max_score=10), "v1")  # 30 %
    better = store.record_grade(report(score=2, max_score=4, lab_version="2.0.0"), "v2")  # 50 %
    assert store.best("demo-lab") == better


def test_hints_used_is_the_highest_hint_shown(tmp_path):
    store = ProgressStore(tmp_path)
    assert store.hints_used("demo-lab") == 0
    store.record_hint("demo-lab", 1)
    store.record_hint("demo-lab", 2)
    store.record_hint("demo-lab", 1)  # looking at hint 1 again does not take back hint 2
    assert store.hints_used("demo-lab") == 2
    assert store.hints_used("other-lab") == 0
    with pytest.raises(ValueError):
        store.record_hint("demo-lab", 0)


def test_solution_views_record_whether_they_were_forced(tmp_path):
    store = ProgressStore(tmp_path)
    store.record_solution_view("demo-lab", forced=True)
    store.record_solution_view("demo-lab", forced=False)
    assert [forced for _, forced in store.solution_views("demo-lab")] == [True, False]
    assert store.solution_views("other-lab") == []


def test_progress_summarises_every_lab_in_one_read(tmp_path):
    store = ProgressStore(tmp_path)
    store.record_grade(report(score=1, max_score=2), "a")
    best = store.record_grade(report(score=2, max_score=2), "b")
    store.record_hint("hinted-lab", 1)
    store.record_solution_view("peeked-lab", forced=True)
    progress = store.progress()
    assert set(progress) == {"demo-lab", "hinted-lab", "peeked-lab"}
    demo = progress["demo-lab"]
    assert (demo.best, demo.attempts, demo.hints_used, demo.passed) == (best, 2, 0, True)
    assert progress["hinted-lab"].best is None and progress["hinted-lab"].hints_used == 1
    assert progress["peeked-lab"].solution_viewed and not progress["peeked-lab"].passed


def _record_many(workspace: str, lab: str, count: int, start_at: float) -> None:
    while time.time() < start_at:  # line the writers up so they really overlap
        time.sleep(0.001)
    store = ProgressStore(Path(workspace))
    for number in range(count):
        store.record_grade(report(lab=lab, score=number), f"{lab}-{number}")


def test_concurrent_writers_all_land(tmp_path):
    context = multiprocessing.get_context("spawn")  # fresh interpreters, like two `labs grade` runs
    start_at = time.time() + 3.0
    writers = [context.Process(target=_record_many, args=(str(tmp_path), f"lab-{n}", 15, start_at)) for n in range(3)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(timeout=120)
        assert writer.exitcode == 0, f"a writer failed with exit code {writer.exitcode} (database locked?)"
    progress = ProgressStore(tmp_path).progress()
    assert {lab: p.attempts for lab, p in progress.items()} == {"lab-0": 15, "lab-1": 15, "lab-2": 15}


def _record_forever(workspace: str, acknowledged) -> None:
    store = ProgressStore(Path(workspace))
    number = 0
    while True:
        store.record_grade(report(score=number), f"sha-{number}")
        number += 1
        acknowledged.value = number


def test_sigkill_mid_write_leaves_a_consistent_store(tmp_path):
    context = multiprocessing.get_context("fork")
    acknowledged = context.Value("i", 0, lock=False)
    writer = context.Process(target=_record_forever, args=(str(tmp_path), acknowledged))
    writer.start()
    deadline = time.time() + 60
    while acknowledged.value < 20 and time.time() < deadline:
        time.sleep(0.01)
    os.kill(writer.pid, signal.SIGKILL)
    writer.join()
    done = acknowledged.value
    assert done >= 20, "the writer never got going"

    store = ProgressStore(tmp_path)
    with sqlite3.connect(store.path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    attempts = store.attempts("demo-lab")
    # every acknowledged record is there; at most the one in flight also committed, never half of one
    assert done <= len(attempts) <= done + 1, f"{done} records were acknowledged, {len(attempts)} are stored"
    assert [a.submission_sha256 for a in attempts] == [f"sha-{n}" for n in range(len(attempts))]
    store.record_grade(report(), "after the crash")  # and the store is still writable


def test_a_damaged_file_gives_an_error_that_says_what_to_do(tmp_path):
    path = tmp_path / ".gaplabs" / "progress.sqlite3"
    path.parent.mkdir()
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(GaplabsError) as caught:
        ProgressStore(tmp_path).best("demo-lab")
    assert caught.value.where == str(path) and "move it aside" in caught.value.fix


def test_a_store_from_a_newer_gaplabs_is_not_touched(tmp_path):
    store = ProgressStore(tmp_path)
    store.record_hint("demo-lab", 1)
    with sqlite3.connect(store.path) as conn:
        conn.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    with pytest.raises(GaplabsError, match="newer gaplabs"):
        ProgressStore(tmp_path).hints_used("demo-lab")
