"""Developer and CI sessions: `nox` runs lint, tests and validate; `nox -s bench` runs benchmarks."""

from __future__ import annotations

import os

import nox

nox.options.sessions = ["lint", "tests", "validate"]
nox.options.reuse_existing_virtualenvs = True
CONSTRAINTS = ["-c", "constraints-cpu.txt"] if not os.environ.get("GAPLABS_NO_CPU_PIN") else []


def _install(session: nox.Session) -> None:
    # torch first and pinned, so resolving the package never pulls the CUDA build on a CPU machine.
    session.install("torch==2.13.0" if CONSTRAINTS else "torch")
    session.install("-e", ".[dev]", *CONSTRAINTS)


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff>=0.5")
    session.run("ruff", "check", "grader", "cli.py", "tests", "noxfile.py", "bench")


@nox.session
def tests(session: nox.Session) -> None:
    _install(session)
    session.run("pytest", "-q", *session.posargs)


@nox.session
def validate(session: nox.Session) -> None:
    """Every lab: schema, starter in sync, solution full marks, starter fails, every mutant caught."""
    _install(session)
    session.run("labs", "validate", "--all", *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    _install(session)
    session.run("python", "bench/grade_latency.py", *session.posargs)
    session.run("python", "bench/batch.py", *session.posargs)
