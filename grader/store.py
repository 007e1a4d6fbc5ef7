"""The progress store: every grade, hint and solution view, in SQLite inside the workspace.

File: `<workspace>/.gaplabs/progress.sqlite3`. Why SQLite: one file the student can back up or
delete, no server, and real transactions, so two `labs grade` runs at the same time (a terminal and
`labs watch`) both land, and a SIGKILL in the middle of a write leaves the previous state intact.

Choices and their costs:

- WAL journal: readers never block the writer and a commit is one append. Cost: two side files
  (`-wal`, `-shm`) next to the database, and WAL does not work on network filesystems (NFS, SMB);
  a workspace there gets "database is locked" errors. Keep the workspace on a local disk.
- `synchronous=FULL`: a grade that was reported is on disk even after a power cut, at the price of
  one fsync per record (milliseconds; a grade takes seconds).
- A connection per operation, opened and closed: a few hundred microseconds each, and nothing to
  leak or share across the processes the grader forks.
- Every write is one `BEGIN IMMEDIATE` transaction; the busy timeout makes a second writer wait
  instead of failing.

Reads of a store that does not exist yet return "nothing recorded" without creating it, so
`labs list` on a fresh machine leaves no folders behind. Schema version lives in
`PRAGMA user_version`; bump it with a migration when a table changes.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from grader.errors import GaplabsError

SCHEMA_VERSION = 1
BUSY_TIMEOUT_S = 30.0  # a grade record takes milliseconds; 30 s only matters if a process hangs mid-write

_SCHEMA = """
CREATE TABLE IF NOT EXISTS grades (
    id INTEGER PRIMARY KEY,
    lab TEXT NOT NULL,
    lab_version TEXT,
    graded_at TEXT NOT NULL,            -- UTC, ISO 8601
    score REAL NOT NULL,
    max_score REAL NOT NULL,
    passed INTEGER NOT NULL,
    device TEXT,
    submission_sha256 TEXT NOT NULL,
    duration_s REAL,
    report_json TEXT NOT NULL           -- the whole report, for later questions
);
CREATE INDEX IF NOT EXISTS grades_by_lab ON grades (lab, graded_at);
CREATE TABLE IF NOT EXISTS hint_views (
    id INTEGER PRIMARY KEY,
    lab TEXT NOT NULL,
    hint_number INTEGER NOT NULL,       -- 1-based, as shown by `labs hint`
    viewed_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS hint_views_by_lab ON hint_views (lab);
CREATE TABLE IF NOT EXISTS solution_views (
    id INTEGER PRIMARY KEY,
    lab TEXT NOT NULL,
    forced INTEGER NOT NULL,            -- 1: shown with --force before the lab was passed
    viewed_at TEXT NOT NULL
);
"""

# Best attempt: passed first, then the highest fraction of the points, then the latest.
_FRACTION = "CASE WHEN max_score > 0 THEN score / max_score ELSE 0 END"
_BEST_ORDER = f"passed DESC, {_FRACTION} DESC, graded_at DESC, id DESC"
_GRADE_COLUMNS = "id, lab, lab_version, graded_at, score, max_score, passed, device, submission_sha256, duration_s"


def _utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class Attempt:
    """One recorded grade."""

    id: int
    lab: str
    lab_version: str | None
    graded_at: str
    score: float
    max_score: float
    passed: bool
    device: str | None
    submission_sha256: str
    duration_s: float | None

    @classmethod
    def from_row(cls, row: tuple) -> Attempt:
        fields = dict(zip(_GRADE_COLUMNS.split(", "), row, strict=True))
        fields["passed"] = bool(fields["passed"])
        return cls(**fields)


@dataclass(frozen=True)
class LabProgress:
    """What `labs list` and `labs status` show for one lab."""

    lab: str
    best: Attempt | None
    attempts: int
    hints_used: int
    solution_viewed: bool

    @property
    def passed(self) -> bool:
        return self.best is not None and self.best.passed


class ProgressStore:
    """Grades, hints and solution views of one workspace."""

    def __init__(self, workspace: Path):
        self.path = Path(workspace) / ".gaplabs" / "progress.sqlite3"
        self._ready = False

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        except sqlite3.Error as exc:
            raise self._unusable(exc) from None
        try:
            conn.execute("PRAGMA synchronous=FULL")
            if not self._ready:
                self._create_schema(conn)
                self._ready = True
            yield conn
        except sqlite3.DatabaseError as exc:
            if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
                raise GaplabsError(
                    f"the progress store stayed locked for {BUSY_TIMEOUT_S:.0f} s",
                    where=str(self.path),
                    fix="another gaplabs process is stuck writing; stop it, or keep the workspace on a local disk (not NFS)",
                ) from None
            raise self._unusable(exc) from None
        finally:
            conn.close()

    def _unusable(self, exc: Exception) -> GaplabsError:
        return GaplabsError(
            f"cannot use the progress store: {exc}",
            where=str(self.path),
            fix="if the file is damaged, move it aside (your notebooks are not in it) and run the command again",
        )

    def _create_schema(self, conn: sqlite3.Connection) -> None:
        self._ensure_wal(conn)
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise GaplabsError(
                f"the progress store was written by a newer gaplabs (schema {version}, this one reads {SCHEMA_VERSION})",
                where=str(self.path),
                fix="upgrade gaplabs (`pip install -U gaplabs`)",
            )
        if version == SCHEMA_VERSION:
            return
        with self._transaction(conn):
            for statement in filter(str.strip, _SCHEMA.split(";")):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    @staticmethod
    def _ensure_wal(conn: sqlite3.Connection) -> None:
        """Switch a new database to WAL. The switch needs the file to itself and SQLite does not wait
        for that (no busy handler), so two first-ever commands at once retry here until the timeout.
        The mode is stored in the file: later opens only read it."""
        deadline = time.monotonic() + BUSY_TIMEOUT_S
        while True:
            try:
                mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
                if mode != "wal":  # a refused switch returns the old mode instead of raising
                    mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
                if mode == "wal":
                    return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc):
                    raise
            if time.monotonic() > deadline:
                raise sqlite3.OperationalError("database is locked (could not switch it to WAL mode)")
            time.sleep(0.02)

    @staticmethod
    @contextmanager
    def _transaction(conn: sqlite3.Connection) -> Iterator[None]:
        # IMMEDIATE takes the write lock up front: two writers queue on the busy timeout instead of
        # deadlocking when both try to upgrade a read lock.
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    # -- writes: one transaction each ---------------------------------------------------------

    def record_grade(self, report: dict, submission_sha256: str) -> Attempt:
        """Record one grading report (the engine's JSON report dict) and return it as an Attempt."""
        try:
            lab = str(report["lab"])
            score = float(report["score"])
            max_score = float(report["max_score"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"a grade report needs 'lab', 'score' and 'max_score'; got keys {sorted(report)}") from exc
        passed = bool(report.get("passed", max_score > 0 and score >= max_score))
        row = (
            lab,
            None if report.get("lab_version") is None else str(report["lab_version"]),
            _utc_now(),
            score,
            max_score,
            int(passed),
            None if report.get("device") is None else str(report["device"]),
            submission_sha256,
            None if report.get("duration_s") is None else float(report["duration_s"]),
            json.dumps(report, default=str, allow_nan=True),
        )
        with self._connect() as conn, self._transaction(conn):
            cursor = conn.execute(
                "INSERT INTO grades (lab, lab_version, graded_at, score, max_score, passed, device,"
                " submission_sha256, duration_s, report_json) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                row,
            )
            return Attempt(cursor.lastrowid, *row[:5], passed, row[6], submission_sha256, row[8])

    def record_hint(self, lab_id: str, n: int) -> None:
        """Record that hint `n` (1-based) of `lab_id` was shown."""
        if n < 1:
            raise ValueError(f"hint numbers start at 1, got {n}")
        with self._connect() as conn, self._transaction(conn):
            conn.execute("INSERT INTO hint_views (lab, hint_number, viewed_at) VALUES (?, ?, ?)", (lab_id, n, _utc_now()))

    def record_solution_view(self, lab_id: str, forced: bool) -> None:
        """Record that the solution of `lab_id` was shown; `forced`: before the lab was passed."""
        with self._connect() as conn, self._transaction(conn):
            conn.execute("INSERT INTO solution_views (lab, forced, viewed_at) VALUES (?, ?, ?)", (lab_id, int(forced), _utc_now()))

    # -- reads --------------------------------------------------------------------------------

    def best(self, lab_id: str) -> Attempt | None:
        """The best attempt: a passing one if any, else the highest fraction of points, latest on ties."""
        if not self.path.exists():
            return None
        with self._connect() as conn:
            row = conn.execute(f"SELECT {_GRADE_COLUMNS} FROM grades WHERE lab = ? ORDER BY {_BEST_ORDER} LIMIT 1", (lab_id,)).fetchone()
        return None if row is None else Attempt.from_row(row)

    def attempts(self, lab_id: str) -> list[Attempt]:
        """Every attempt at `lab_id`, oldest first."""
        if not self.path.exists():
            return []
        with self._connect() as conn:
            rows = conn.execute(f"SELECT {_GRADE_COLUMNS} FROM grades WHERE lab = ? ORDER BY graded_at, id", (lab_id,)).fetchall()
        return [Attempt.from_row(row) for row in rows]

    def hints_used(self, lab_id: str) -> int:
        """How many hints of `lab_id` the student has seen (the highest hint number shown)."""
        if not self.path.exists():
            return 0
        with self._connect() as conn:
            return conn.execute("SELECT COALESCE(MAX(hint_number), 0) FROM hint_views WHERE lab = ?", (lab_id,)).fetchone()[0]

    def solution_views(self, lab_id: str) -> list[tuple[str, bool]]:
        """(viewed_at, forced) of every time the solution of `lab_id` was shown, oldest first."""
        if not self.path.exists():
            return []
        with self._connect() as conn:
            rows = conn.execute("SELECT viewed_at, forced FROM solution_views WHERE lab = ? ORDER BY id", (lab_id,)).fetchall()
        return [(at, bool(forced)) for at, forced in rows]

    def progress(self) -> dict[str, LabProgress]:
        """Progress of every lab the store knows about, in one read (for `labs list` and `labs status`)."""
        if not self.path.exists():
            return {}
        with self._connect() as conn:
            rows = conn.execute(
                f"SELECT {_GRADE_COLUMNS} FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY lab ORDER BY {_BEST_ORDER}) AS rank"
                " FROM grades) WHERE rank = 1"
            ).fetchall()
            counts = dict(conn.execute("SELECT lab, COUNT(*) FROM grades GROUP BY lab").fetchall())
            hints = dict(conn.execute("SELECT lab, MAX(hint_number) FROM hint_views GROUP BY lab").fetchall())
            solutions = {lab for (lab,) in conn.execute("SELECT DISTINCT lab FROM solution_views").fetchall()}
        best = {attempt.lab: attempt for attempt in map(Attempt.from_row, rows)}
        labs = set(best) | set(counts) | set(hints) | solutions
        return {
            lab: LabProgress(lab, best.get(lab), counts.get(lab, 0), hints.get(lab, 0), lab in solutions)
            for lab in sorted(labs)
        }
