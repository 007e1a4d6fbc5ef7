"""Nothing lost: SIGKILL of `labs start`, `labs reset` and `labs grade` at random moments never
corrupts the progress store or loses the student's notebook; concurrent grades both land.

The kill moments are drawn from a seeded generator; the seed is printed in every failure message
and can be replayed with GAPLABS_KILL_SEED=<seed>.
"""

from __future__ import annotations

import json
import os
import random
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from tests.adversarial.harness import (
    LAB_DIR,
    LAB_ID,
    SOLUTION,
    cli_env,
    graded_sources,
    header_cell,
    kill_marked,
    labs_command,
    leftovers,
    make_notebook,
    new_marker,
    processes_with,
    record,
    solution_cell,
)

KILLS = {"start": 24, "reset": 20, "grade": 8}  # kills that must land on a running command: 52 in all


class Workspace:
    """One student's workspace, and what must survive in it."""

    def __init__(self, root: Path):
        self.root = root
        self.home = root / "home"
        self.env = cli_env(self.home, cwd=root)
        self.dir = self.home / "gaplabs"
        self.folder = self.dir / LAB_ID
        self.notebook = self.folder / f"{LAB_ID}.ipynb"
        self.store = self.dir / ".gaplabs" / "progress.sqlite3"
        self.starter = (LAB_DIR / "starter.ipynb").read_bytes()
        self.version = 0

    def save_work(self) -> bytes:
        """The student edits and saves: a new version of their notebook (the starter plus their own cell)."""
        self.version += 1
        cells = [header_cell(), solution_cell("scaled_dot_product_attention"), f"# my work, version {self.version}\n"]
        make_notebook(self.notebook, cells)
        return self.notebook.read_bytes()

    def notebooks(self) -> list[Path]:
        return sorted(self.folder.rglob("*.ipynb")) if self.folder.exists() else []

    def backups(self) -> list[bytes]:
        return [path.read_bytes() for path in self.notebooks() if path.parent.name == "backups"]

    def attempts(self) -> int:
        if not self.store.exists():
            return 0
        with sqlite3.connect(self.store, timeout=30) as connection:
            verdict = connection.execute("PRAGMA integrity_check").fetchone()[0]
            assert verdict == "ok", f"the progress store is corrupt: {verdict}"
            tables = {name for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if "grades" not in tables:
                return 0
            rows = connection.execute("SELECT score, max_score, passed, report_json FROM grades").fetchall()
        for score, max_score, passed, report in rows:  # every recorded attempt is whole
            data = json.loads(report)
            assert data["score"] == score and data["max_score"] == max_score and bool(data["passed"]) == bool(passed), data
        from grader.store import ProgressStore

        ProgressStore(self.dir).attempts(LAB_ID)  # and the store opens the way the CLI opens it
        return len(rows)


def run_and_kill(command: list[str], ws: Workspace, delay: float) -> tuple[bool, int | None]:
    """Start `labs COMMAND`, SIGKILL it after `delay` seconds; (landed, exit code if it finished first)."""
    process = subprocess.Popen(labs_command(*command), cwd=ws.root, env=ws.env, stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        return False, process.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        return True, None


def timed(command: list[str], ws: Workspace) -> float:
    started = time.monotonic()
    done = subprocess.run(labs_command(*command), cwd=ws.root, env=ws.env, stdin=subprocess.DEVNULL, capture_output=True)
    assert done.returncode in (0, 1), done.stderr.decode()[-2000:]
    return time.monotonic() - started


@pytest.mark.slow
def test_sigkill_at_random_moments_never_loses_work(tmp_path):
    seed = int(os.environ.get("GAPLABS_KILL_SEED", time.time_ns() % 2**32))
    rng = random.Random(seed)
    ws = Workspace(tmp_path)
    commands = {"start": ["start", LAB_ID, "--no-jupyter"], "reset": ["reset", LAB_ID, "--yes"]}
    marker = new_marker()
    (tmp_path / marker).mkdir()
    commands["grade"] = ["grade", LAB_ID, "--device", "cpu", "--quiet", "--json", str(tmp_path / marker / "r.json")]
    # How long each command takes here, unkilled: the kill moments are drawn over that span.
    durations = {"start": timed(commands["start"], ws), "reset": timed(commands["reset"], ws)}
    ws.save_work()
    durations["grade"] = timed(commands["grade"], ws)
    schedule = [name for name, count in KILLS.items() for _ in range(count)]
    rng.shuffle(schedule)
    landed = {name: 0 for name in KILLS}
    attempts = ws.attempts()
    tries = 0
    while schedule and tries < 3 * sum(KILLS.values()):
        tries += 1
        name = schedule[0]
        fresh = name == "start" and rng.random() < 0.5  # half the starts create the copy, half resume it
        if fresh:
            for path in ws.notebooks():
                path.unlink()
            work = None
        else:
            work = ws.save_work()
        span = durations[name]
        # grade: half the kills in the last fifth, where the attempt is recorded
        delay = rng.uniform(0.8 * span, 1.05 * span) if name == "grade" and rng.random() < 0.5 else rng.uniform(0.02, 1.05 * span)
        hit, code = run_and_kill(commands[name], ws, delay)
        where = f"(seed {seed}, kill {sum(landed.values()) + 1}: `labs {name}` after {delay:.2f} s of ~{span:.1f} s)"
        if name == "grade":
            kill_marked(marker)  # grading processes a killed `labs grade` left (see the test below)
        if hit:
            landed[name] += 1
            schedule.pop(0)
        # Every notebook and backup is whole JSON.
        for path in ws.notebooks():
            try:
                json.loads(path.read_bytes())
            except ValueError as exc:
                raise AssertionError(f"{path.name} is not whole JSON after the kill {where}: {exc}") from None
        # The student's work is in the notebook or in a backup; a fresh copy is absent or the whole starter.
        current = ws.notebook.read_bytes() if ws.notebook.exists() else None
        if work is not None:
            assert current == work or work in ws.backups(), f"the student's notebook was lost {where}"
        else:
            assert current in (None, ws.starter), f"a half-written starter {where}"
        # The store opens, passes SQLite's integrity check, and lost no recorded attempt.
        now = ws.attempts()
        assert now >= attempts, f"recorded attempts went from {attempts} to {now} {where}"
        attempts = now
    record("kills", "sigkill-start-reset-grade", landed=landed, seed=seed, lost_notebooks=0, corrupt_stores=0)
    assert not schedule, f"only {landed} kills landed on a running command (seed {seed})"
    assert sum(landed.values()) >= 50


@pytest.mark.slow
def test_two_concurrent_grades_both_record_their_attempts(tmp_path):
    ws = Workspace(tmp_path)
    make_notebook(ws.notebook, graded_sources(SOLUTION))
    command = labs_command("grade", LAB_ID, "--device", "cpu", "--quiet")
    first, second = (subprocess.Popen(command, cwd=tmp_path, env=ws.env, stdin=subprocess.DEVNULL,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2))
    outputs = [process.communicate(timeout=300) for process in (first, second)]
    for process, (out, err) in zip((first, second), outputs, strict=True):
        assert process.returncode == 0, (out + err).decode()[-2000:]
    from grader.store import ProgressStore

    recorded = ProgressStore(ws.dir).attempts(LAB_ID)
    record("concurrency", "two-concurrent-grades", recorded=len(recorded))
    assert len(recorded) == 2 and all(attempt.passed for attempt in recorded), recorded


@pytest.mark.slow
def test_killed_grade_leaves_no_process_behind(tmp_path):
    ws = Workspace(tmp_path)
    make_notebook(ws.notebook, [header_cell(), "while True:\n    pass\n"])  # grading would run to the wall time
    marker = new_marker()
    (tmp_path / marker).mkdir()
    command = labs_command("grade", LAB_ID, "--device", "cpu", "--json", str(tmp_path / marker / "r.json"))
    process = subprocess.Popen(command, cwd=tmp_path, env=ws.env, stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while len(processes_with(marker)) < 4 and time.monotonic() < deadline:  # labs, grading process, zygote, submission
            time.sleep(0.1)
        if len(processes_with(marker)) < 4:
            pytest.fail(f"grading never started: {processes_with(marker)}")
        process.kill()
        process.wait()
        left = leftovers(marker, grace_s=3.0)
        record("kills", "killed-grade-leftovers", leftover_processes=len(left))
        assert left == [], f"{len(left)} grading processes outlived the killed `labs grade`: {left}"
    finally:
        kill_marked(marker)
