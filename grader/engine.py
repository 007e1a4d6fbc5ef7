"""The grading engine: one submission notebook against a lab's hidden pytest checks, in isolation.

    grade(lab, notebook=path) -> GradeReport

The calling process stays clean (no check module, no CUDA context, no student code): each grade
forks a trusted grading process that runs pytest on the lab's checks, and that process forks a
zygote from which the submission process comes (grader/sandbox.py). The report travels back to
the caller as JSON written by the trusted process, never by the submission.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import json
import os
import select
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from grader.errors import GaplabsError, LabFormatError
from grader.notebook import CodeCell, graded_cells
from grader.registry import Lab

# Worst first: when a check has several pytest items, the worst outcome names the check's status.
_SEVERITY = {"timeout": 0, "error": 1, "failed": 2, "skipped": 3, "passed": 4}
MAX_MESSAGE = 1500


@dataclass
class CheckResult:
    id: str
    title: str
    points: float
    max_points: float
    status: str
    message: str = ""
    duration_s: float = 0.0


@dataclass
class GradeReport:
    lab: str
    lab_version: str
    submission: str
    device: str
    score: float
    max_score: float
    passed: bool
    duration_s: float
    checks: list[CheckResult]
    cell_errors: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    isolation: str = "unknown"
    lab_error: str | None = None
    output_tail: str = ""

    def to_dict(self) -> dict:
        data = asdict(self)
        data["checks"] = [asdict(check) for check in self.checks]
        return data

    @classmethod
    def from_dict(cls, data: dict) -> GradeReport:
        fields = dict(data)
        fields["checks"] = [CheckResult(**check) for check in data["checks"]]
        return cls(**fields)


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise GaplabsError("--device cuda was asked for, but torch sees no CUDA device", where="--device",
                           fix="run on a machine with a GPU and a CUDA build of torch, or use --device cpu (or auto)")
    if device not in ("cpu", "cuda"):
        raise GaplabsError(f"unknown device {device!r}", where="--device", fix="use cpu, cuda or auto")
    return device


def check_files(lab: Lab) -> list[Path]:
    files = sorted(lab.checks_dir.glob("test_*.py")) if lab.checks_dir.is_dir() else []
    if not files:
        raise LabFormatError(f"lab {lab.id!r} has no checks", where=str(lab.checks_dir),
                             fix="add pytest files named test_*.py there (see docs/check-api.md)")
    return files


# pytest's own plugins that a grading run loads; importing them here means each forked grading
# process finds them ready instead of importing them again (about 0.1 s of CPU per submission).
_PYTEST_PLUGINS = ("mark", "main", "runner", "fixtures", "helpconfig", "python", "skipping", "tmpdir", "monkeypatch",
                   "recwarn", "capture", "warnings", "logging", "reports", "debugging", "threadexception",
                   "unraisableexception", "setuponly", "setupplan", "legacypath", "assertion")
_DISABLED_PLUGINS = ("cacheprovider", "terminal", "stepwise", "junitxml", "pastebin", "doctest", "faulthandler",
                     "unittest", "subtests", "nose")


def preload(lab: Lab) -> None:
    """Import what submissions and checks need once, here, so every forked process shares it."""
    modules = ["torch", "numpy", "numpy.random", "grader.worker", "grader.channel", "grader.testing", "pytest",
               *(f"_pytest.{name}" for name in _PYTEST_PLUGINS), *lab.spec.preload]
    for module in modules:
        if module in sys.modules:
            continue
        try:
            importlib.import_module(module)
        except ImportError:
            pass  # the submission will see the ImportError itself, with its own message


# -- the public entry point ---------------------------------------------------------------------
def grade(lab: Lab, *, notebook: Path | None = None, cells: Sequence[CodeCell] | None = None,
          extra_code: Sequence[str] = (), device: str = "auto", label: str | None = None,
          num_threads: int | None = None, isolate: bool = True) -> GradeReport:
    """Grade one notebook (or explicit cells) of `lab`. `extra_code` runs after the notebook's cells
    (a mutant is graded as the solution plus the mutant's code). Never raises for anything the
    submission does; raises GaplabsError for a missing or broken notebook or lab."""
    started = time.monotonic()
    request = build_request(lab, notebook=notebook, cells=cells, extra_code=extra_code, device=device, label=label,
                            num_threads=num_threads, isolate=isolate)
    pid, read_fd = _start_trusted(request)
    try:
        data = _finish_trusted(pid, read_fd, timeout=lab.spec.limits.wall_time_s + 30)
    finally:
        shutil.rmtree(request["workdir"], ignore_errors=True)
    return _to_report(lab, request, data, started)


def build_request(lab: Lab, *, notebook: Path | None = None, cells: Sequence[CodeCell] | None = None,
                  extra_code: Sequence[str] = (), device: str = "auto", label: str | None = None,
                  num_threads: int | None = None, isolate: bool = True) -> dict:
    """Everything the trusted grading process needs, checked here so user mistakes raise early."""
    spec = lab.spec
    device = resolve_device(device)
    if device not in spec.devices:
        raise GaplabsError(f"lab {lab.id!r} does not run on {device}", where=f"{lab.dir / 'lab.yaml'}, key 'devices'",
                           fix=f"use --device {' or '.join(spec.devices)}")
    if cells is None:
        if notebook is None:
            raise GaplabsError("nothing to grade", fix="pass a notebook")
        cells = graded_cells(notebook)
    check_files(lab)
    cell_payload = [{"index": cell.index, "source": cell.source, "label": f"cell {cell.index}"} for cell in cells]
    for number, code in enumerate(extra_code, start=1):
        cell_payload.append({"index": len(cell_payload) + 1000 + number, "source": code, "label": f"extra {number}"})
    preload(lab)
    submission_name = label or (str(notebook) if notebook is not None else "<cells>")
    return {"lab_dir": str(lab.dir), "lab_root": str(lab.root), "lab_origin": lab.origin, "cells": cell_payload,
            "digest": lab.trusted_digest(),
            "device": device, "submission": submission_name, "num_threads": num_threads, "isolate": isolate}


def _to_report(lab: Lab, request: dict, data: dict | None, started: float) -> GradeReport:
    if lab.trusted_digest() != request["digest"]:
        # Only possible without namespace isolation (same user, files not hidden): the grade is void.
        data = error_report(lab, request["device"], request["submission"],
                               "the lab's checks or lab.yaml changed on disk during grading; the grade is void")
        data["lab_error"] = "lab files modified during grading (tampering?): restore them and grade again"
    if data is None:
        data = error_report(lab, request["device"], request["submission"],
                               "the grading process itself died or ran past the lab's time limit")
    report = GradeReport.from_dict(data)
    report.duration_s = round(time.monotonic() - started, 3)
    return report


def error_report(lab: Lab, device: str, submission: str, why: str) -> dict:
    """A report in which every check is an error with `why`: zero points, nothing skipped."""
    checks = [asdict(CheckResult(c.id, c.title, 0.0, c.points, "error", why)) for c in lab.spec.checks]
    return {"lab": lab.id, "lab_version": lab.spec.version, "submission": submission, "device": device,
            "score": 0.0, "max_score": lab.spec.max_points, "passed": False, "duration_s": 0.0, "checks": checks,
            "notes": [why]}


def _start_trusted(request: dict) -> tuple[int, int]:
    """Fork the trusted grading process; it writes its JSON report to the returned pipe.

    The submission's working folder is made here, so that this process can remove it even when
    the grading process is killed (Ctrl-C, a time-out)."""
    request["workdir"] = tempfile.mkdtemp(prefix="gaplabs-submission-")
    from grader.sandbox import make_undumpable

    make_undumpable()  # a submission running as the same user may not ptrace the process that writes reports
    read_end, write_end = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    # Objects that exist now are never collected in the children: the collector would otherwise
    # touch (and so copy) every page of the imported torch that the fork shares.
    gc.freeze()
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        code = 0
        try:
            from grader.sandbox import PR_SET_PDEATHSIG, _prctl

            _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # `labs grade` killed: grading stops with it
            if os.getppid() != parent:
                os._exit(1)
            payload = json.dumps(_grade_here(request)).encode()
        except BaseException:  # a bug in the engine or a lab: report it rather than hang
            import traceback

            payload, code = json.dumps({"engine_error": traceback.format_exc()}).encode(), 1
        try:
            with os.fdopen(write_end, "wb") as handle:
                handle.write(payload)
        finally:
            os._exit(code)
    os.close(write_end)
    return pid, read_end


def _decode_trusted(chunks: list[bytes]) -> dict | None:
    if not chunks:
        return None
    data = json.loads(b"".join(chunks))
    if "engine_error" in data:
        raise RuntimeError(f"the grading engine failed:\n{data['engine_error']}")
    return data


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


def _finish_trusted(pid: int, read_end: int, timeout: float) -> dict | None:
    """Read the trusted process's report; kill it if it runs past `timeout`."""
    chunks = []
    deadline = time.monotonic() + timeout
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                os.kill(pid, signal.SIGKILL)
                chunks = []
                break
            ready, _, _ = select.select([read_end], [], [], min(remaining, 1.0))
            if ready:
                chunk = os.read(read_end, 1 << 20)
                if not chunk:
                    break
                chunks.append(chunk)
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        raise
    finally:
        os.close(read_end)
        _reap(pid)
    return _decode_trusted(chunks)


# -- inside the trusted grading process ---------------------------------------------------------
def _grade_here(request: dict) -> dict:
    from grader.registry import Lab
    from grader.sandbox import WorkerSpec, Zygote, kill_descendants

    os.environ["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    import torch

    # One intra-op thread each for the checks and the submission: check tensors are small, and two
    # processes each spinning two OpenMP threads on a 2-core machine made tiny ops 100x slower.
    torch.set_num_threads(1)
    lab = Lab(dir=Path(request["lab_dir"]), root=Path(request["lab_root"]), origin=request["lab_origin"])
    spec = lab.spec
    limits = spec.limits
    started = time.monotonic()
    zygote = Zygote()  # before any check module loads or CUDA starts
    workdir = Path(request["workdir"])
    session = None
    try:
        for source in lab.public_files():
            target = workdir / source.relative_to(lab.public_dir)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
        hide = hidden_paths(lab)
        worker_spec = WorkerSpec(workdir=str(workdir), device=request["device"], memory_mb=limits.memory_mb,
                                 cpu_seconds=int(limits.wall_time_s * 2) + 10, num_threads=request["num_threads"] or 1,
                                 hide=hide, isolate=request["isolate"])
        from grader.channel import Session

        session = Session(zygote, worker_spec, request["cells"], call_timeout=limits.call_timeout_s,
                          deadline=started + limits.wall_time_s, memory_limit_bytes=limits.memory_mb * 2**20 + 512 * 2**20)
        session.start()  # the submission runs its cells while pytest starts up here
        plugin = GraderPlugin(lab, session, request)
        _run_pytest(lab, plugin)
        session.close()
        report = plugin.report(time.monotonic() - started)
        report["output_tail"] = session.output_tail()[-4000:]
        return report
    finally:
        if session is not None:
            session.close()
        zygote.close()
        kill_descendants(os.getpid())


def hidden_paths(lab: Lab) -> list[str]:
    """What a submission must not read: every lab's checks and mutants, every solution and every
    pack's git history, in every root (the source tree, an installed copy, fetched packs)."""
    from grader.registry import pack_roots

    paths = {str(lab.checks_dir), str(lab.mutants_dir), str(lab.solution_dir)}
    # Installed copies too: an editable install still carries a gaplabs_data copy in site-packages.
    installed = [Path(entry) / "gaplabs_data" for entry in sys.path if entry and (Path(entry) / "gaplabs_data").is_dir()]
    for root in [lab.root, *(root for root, _ in pack_roots()), *installed]:
        paths.update(str(root / name) for name in ("solutions", ".git"))
        labs_dir = root / "labs"
        if labs_dir.is_dir():
            for lab_dir in labs_dir.iterdir():
                paths.update((str(lab_dir / "checks"), str(lab_dir / "mutants")))
    return sorted(path for path in paths if os.path.isdir(path))


def _run_pytest(lab: Lab, plugin: GraderPlugin) -> None:
    import pytest

    disabled = [arg for name in _DISABLED_PLUGINS for arg in ("-p", f"no:{name}")]
    args = [str(lab.checks_dir), *disabled, "--assert=plain", "--import-mode=importlib", "--rootdir", str(lab.checks_dir), "-c", os.devnull,
            "--confcutdir", str(lab.checks_dir),  # no conftest.py from folders above the checks
            "-o", "python_files=test_*.py", "-o", "python_functions=test_*", "-o", "python_classes="]
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        plugin.exit_code = pytest.main(args, plugins=[plugin])


def _trim(text: str) -> str:
    text = text.strip()
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 15] + " ...[truncated]"


class GraderPlugin:
    """A pytest plugin: provides the fixtures of docs/check-api.md and records every outcome."""

    def __init__(self, lab: Lab, session: Any, request: dict):
        self.lab = lab
        self.session = session
        self.request = request
        self.device_name = request["device"]
        self.items: dict[str, list[tuple[str, str, float]]] = {}
        self.collect_errors: list[str] = []
        self.exit_code = 0
        self.source = "\n\n".join(f"# %% {cell['label']}\n{_strip_magics(cell['source'])}" for cell in request["cells"])

    # fixtures (methods of a plugin object are fixtures to pytest) --------------------------------
    import pytest as _pytest

    @_pytest.fixture(scope="session")
    def submission(self):
        from grader.channel import RemoteNamespace

        return RemoteNamespace(self.session)

    @_pytest.fixture(scope="session")
    def device(self):
        import torch

        return torch.device(self.device_name)

    @_pytest.fixture(scope="session")
    def submission_source(self):
        return self.source

    @_pytest.fixture(scope="session")
    def lab_dir(self):
        return self.lab.dir

    @_pytest.fixture(autouse=True)
    def _gaplabs_seed_and_deadline(self):
        import random

        import numpy
        import torch

        from grader.channel import SubmissionTimeout

        if time.monotonic() >= self.session.deadline:
            raise SubmissionTimeout(f"the lab's total time limit ({self.lab.spec.limits.wall_time_s:g} s) ran out before this check started")
        random.seed(0)
        numpy.random.seed(0)
        torch.manual_seed(0)
        yield

    def pytest_configure(self, config):
        config.addinivalue_line("markers", "cuda: the check needs a CUDA device (skipped on CPU)")

    def pytest_collection_modifyitems(self, items):
        import pytest

        if self.device_name != "cuda":
            for item in items:
                if item.get_closest_marker("cuda"):
                    item.add_marker(pytest.mark.skip(reason="needs CUDA; run with --device cuda"))

    def pytest_collectreport(self, report):
        if report.failed:
            self.collect_errors.append(f"{report.nodeid}: {_trim(str(report.longrepr))[-600:]}")

    # outcomes ------------------------------------------------------------------------------------
    def pytest_runtest_makereport(self, item, call):
        check_id = _check_id(item)
        status, message = self._classify(call)
        if call.when != "call" and status == "passed":
            return
        self.items.setdefault(check_id, []).append((status, message, call.duration))

    def _classify(self, call) -> tuple[str, str]:
        from _pytest.outcomes import Failed, Skipped

        from grader.channel import SubmissionCrashed, SubmissionError, SubmissionTimeout

        excinfo = call.excinfo
        if excinfo is None:
            return "passed", ""
        exc = excinfo.value
        if isinstance(exc, Skipped) or excinfo.errisinstance(Skipped):
            return "skipped", str(getattr(exc, "msg", exc))
        if isinstance(exc, SubmissionTimeout):
            return "timeout", str(exc)
        if isinstance(exc, SubmissionCrashed):
            return "error", str(exc)
        if isinstance(exc, SubmissionError):
            text = f"your code raised {exc.type_name}: {exc.message}" if exc.type_name != "MissingDefinition" else exc.message + self._cell_error_context()
            if exc.traceback and exc.type_name != "MissingDefinition":
                text += f"\n{exc.traceback}"
            return "failed", text
        if isinstance(exc, (AssertionError, Failed)):
            return "failed", str(getattr(exc, "msg", None) or exc) or "the check's expectation was not met"
        return "error", f"the check stopped with {type(exc).__name__}: {exc}"

    def _cell_error_context(self) -> str:
        errors = _plain_cell_errors((self.session.init_result or {}).get("cell_errors", []))
        if not errors:
            return ""
        listed = "; ".join(f"{e.get('label')}: {e.get('type')}" for e in errors[:3])
        more = f" and {len(errors) - 3} more" if len(errors) > 3 else ""
        return (f". Some cells raised while the notebook ran ({listed}{more}); a definition that comes after the "
                f"error in the same cell is never made")

    # the report ----------------------------------------------------------------------------------
    def report(self, elapsed: float) -> dict:
        spec = self.lab.spec
        checks, notes = [], []
        for check in spec.checks:
            outcomes = self.items.get(check.id)
            if not outcomes:
                reason = "this check was not found among the lab's check files (a lab error)"
                if self.collect_errors:
                    reason = "the lab's checks could not be loaded (a lab error)"
                checks.append(CheckResult(check.id, check.title, 0.0, check.points, "error", reason))
                continue
            worst = min(outcomes, key=lambda outcome: _SEVERITY[outcome[0]])
            status = worst[0]
            if status == "skipped" and any(o[0] == "passed" for o in outcomes):
                status = "passed"
            points = check.points if status == "passed" else 0.0
            message = "" if status == "passed" else _trim(worst[1])
            checks.append(CheckResult(check.id, check.title, points, check.points, status, message,
                                      round(sum(o[2] for o in outcomes), 3)))
        skipped = [c for c in checks if c.status == "skipped"]
        if skipped:
            notes.append(f"{len(skipped)} check(s) skipped on {self.device_name} and left out of max_score: "
                         + ", ".join(c.id for c in skipped))
        max_score = sum(c.max_points for c in checks if c.status != "skipped")
        score = sum(c.points for c in checks)
        init = self.session.init_result or {}
        cell_errors = _plain_cell_errors(init.get("cell_errors", []))
        if cell_errors:
            notes.append(f"{len(cell_errors)} cell(s) raised while the notebook ran; the cells after them still ran")
        lab_error = "; ".join(self.collect_errors) or None
        return GradeReport(
            lab=self.lab.id, lab_version=spec.version, submission=self.request["submission"], device=self.device_name,
            score=round(score, 6), max_score=round(max_score, 6), passed=score >= max_score - 1e-9 and lab_error is None,
            duration_s=round(elapsed, 3), checks=checks, cell_errors=cell_errors, notes=notes,
            isolation=self.session.isolation, lab_error=lab_error).to_dict()


def _plain_cell_errors(errors: object) -> list[dict]:
    """Cell errors as the submission reported them, reduced to short strings and ints: whatever it
    sent, the report stays plain JSON."""
    plain = []
    for error in errors if isinstance(errors, list) else []:
        if not isinstance(error, dict):
            continue
        entry = {key: _trim(str(error.get(key, ""))) for key in ("label", "type", "message", "traceback")}
        for key in ("cell", "line"):
            value = error.get(key)
            entry[key] = value if type(value) is int else None
        plain.append(entry)
    return plain[:50]


def _check_id(item) -> str:
    name = getattr(item, "originalname", None) or item.name.split("[")[0]
    return name[5:] if name.startswith("test_") else name


def _strip_magics(source: str) -> str:
    return "\n".join("# " + line if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines())


def grade_many(lab: Lab, notebooks: Sequence[Path], *, device: str = "auto", jobs: int = 1,
               on_result: Callable[[Path, GradeReport | None, str | None], None] | None = None,
               ) -> list[tuple[Path, GradeReport | None, str | None]]:
    """Grade many notebooks of one lab, `jobs` at a time, from this one process.

    Each notebook gets its own trusted grading process forked from here, so torch and the lab's
    preloads are imported once for the whole batch. No threads: the parent multiplexes the
    children's report pipes with select (forking from a threaded process is unsafe). A notebook
    that cannot be read yields (path, None, message); nothing a submission does stops the batch.
    """
    device = resolve_device(device)
    preload(lab)
    threads = 1
    timeout = lab.spec.limits.wall_time_s + 30
    pending = list(notebooks)
    running: dict[int, dict] = {}  # read fd -> state
    results: list[tuple[Path, GradeReport | None, str | None]] = []

    def finish(result: tuple[Path, GradeReport | None, str | None]) -> None:
        results.append(result)
        if on_result:
            on_result(*result)

    try:
        while pending or running:
            while pending and len(running) < jobs:
                path = pending.pop(0)
                try:
                    request = build_request(lab, notebook=path, device=device, label=path.name, num_threads=threads)
                except GaplabsError as exc:
                    finish((path, None, str(exc)))
                    continue
                pid, fd = _start_trusted(request)
                running[fd] = {"pid": pid, "path": path, "request": request, "chunks": [],
                               "started": time.monotonic(), "deadline": time.monotonic() + timeout}
            if not running:
                continue
            ready, _, _ = select.select(list(running), [], [], 0.5)
            now = time.monotonic()
            for fd in list(running):
                state = running[fd]
                done = False
                if fd in ready:
                    chunk = os.read(fd, 1 << 20)
                    if chunk:
                        state["chunks"].append(chunk)
                    else:
                        done = True
                elif now > state["deadline"]:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(state["pid"], signal.SIGKILL)
                    state["chunks"] = []
                    done = True
                if done:
                    del running[fd]
                    os.close(fd)
                    _reap(state["pid"])
                    shutil.rmtree(state["request"]["workdir"], ignore_errors=True)
                    report = _to_report(lab, state["request"], _decode_trusted(state["chunks"]), state["started"])
                    finish((state["path"], report, None))
    finally:
        for fd, state in running.items():
            with contextlib.suppress(ProcessLookupError):
                os.kill(state["pid"], signal.SIGKILL)
            os.close(fd)
            _reap(state["pid"])
            shutil.rmtree(state["request"]["workdir"], ignore_errors=True)
    return results
