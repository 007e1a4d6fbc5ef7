"""Benchmark: grade a class of 50 attention-lab submissions with `labs grade --submissions`, --jobs 1 vs 2.

    python bench/batch.py                  # 50 submissions, prints s/submission and the speedup
    python bench/batch.py --count 10 --check   # exit 1 when a target is missed

The class is copies of solutions/attention-from-scratch/solution.ipynb; every fifth one has one of
the lab's mutants appended as a last cell, so the batch grades failing checks too (failures cost
more than passes: assertion messages, tracebacks). Each run is the real CLI in a subprocess, so
the figures include interpreter start and `import torch`: what an instructor or a CI job waits for.

Targets (issue 5): at most 0.4 s per submission with --jobs 2, and --jobs 2 at least 1.7x faster
than --jobs 1. nbgrader autograde costs about 1.95 s per submission on a one-function exercise.

Caveat: one warm-up grade runs first so that neither timed run pays for a cold disk cache; the
figures are wall-clock on whatever else the machine is doing, so run it on an idle machine.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET_S_PER_SUBMISSION = 0.4  # with --jobs 2
TARGET_SPEEDUP = 1.7  # --jobs 2 over --jobs 1
MUTANT_EVERY = 5


def make_class(lab: str, count: int, folder: Path) -> dict[str, str]:
    """Write `count` notebooks into `folder`; returns {file stem: "solution" or the mutant's name}."""
    solution = json.loads((ROOT / "solutions" / lab / "solution.ipynb").read_text(encoding="utf-8"))
    mutants = sorted((ROOT / "labs" / lab / "mutants").glob("*.py"))
    folder.mkdir(parents=True, exist_ok=True)
    kinds = {}
    for index in range(count):
        notebook = dict(solution, cells=list(solution["cells"]))
        kind = "solution"
        if mutants and index % MUTANT_EVERY == MUTANT_EVERY - 1:
            mutant = mutants[(index // MUTANT_EVERY) % len(mutants)]
            notebook["cells"].append({"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [],
                                      "source": mutant.read_text(encoding="utf-8")})
            kind = f"mutant:{mutant.stem}"
        stem = f"student-{index:03d}"
        (folder / f"{stem}.ipynb").write_text(json.dumps(notebook), encoding="utf-8")
        kinds[stem] = kind
    return kinds


def labs_command() -> list[str]:
    found = shutil.which("labs", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    return [found] if found else [sys.executable, str(ROOT / "cli.py")]


def grade_batch(lab: str, folder: Path, jobs: int, device: str, out: Path) -> float:
    """Wall-clock seconds of one `labs grade --submissions` run; raises when the run itself failed."""
    command = [*labs_command(), "grade", lab, "--submissions", str(folder), "--jobs", str(jobs),
               "--device", device, "--gradebook", str(out), "--quiet"]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode not in (0, 1):  # 1 = some submission lost points, expected with mutants
        raise SystemExit(f"`{' '.join(command)}` exited {done.returncode}:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return seconds


def check_grades(gradebook_csv: Path, kinds: dict[str, str]) -> list[str]:
    """Sanity: a fast batch that grades wrongly is no result. Every row present; copies of the solution full marks."""
    with open(gradebook_csv, newline="") as handle:
        rows = {Path(row["submission"]).stem: row for row in csv.DictReader(handle)}
    problems = [f"{stem}: missing from the gradebook" for stem in kinds if stem not in rows]
    for stem, kind in kinds.items():
        row = rows.get(stem)
        if row and kind == "solution" and row["status"] != "ok":
            problems.append(f"{stem} (a copy of the solution) graded {row['score']}/{row['max_score']} ({row['status']})")
        if row and kind != "solution" and row["status"] == "ok":
            problems.append(f"{stem} ({kind}) got full marks: the mutant was not caught")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lab", default="attention-from-scratch")
    parser.add_argument("--count", type=int, default=50, help="submissions in the class")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "batch.json")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="gaplabs-bench-") as tmp:
        tmp = Path(tmp)
        kinds = make_class(args.lab, args.count, tmp / "class")
        mutated = sum(kind != "solution" for kind in kinds.values())
        print(f"{args.count} submissions of {args.lab} ({mutated} with a mutant), device {args.device}, "
              f"{os.cpu_count()} CPU cores")
        make_class(args.lab, 1, tmp / "warmup")
        grade_batch(args.lab, tmp / "warmup", 1, args.device, tmp / "warmup-gradebook")

        figures = {}
        for jobs in (1, 2):
            seconds = grade_batch(args.lab, tmp / "class", jobs, args.device, tmp / f"gradebook-j{jobs}")
            problems = check_grades(tmp / f"gradebook-j{jobs}.csv", kinds)
            if problems:
                print(f"--jobs {jobs}: the grades are wrong, so the timing means nothing:\n  " + "\n  ".join(problems[:10]))
                return 2
            figures[jobs] = seconds
            print(f"--jobs {jobs}: {seconds:6.1f} s total, {seconds / args.count:.3f} s per submission")

    per_submission = figures[2] / args.count
    speedup = figures[1] / figures[2]
    met_time = per_submission <= TARGET_S_PER_SUBMISSION
    met_speedup = speedup >= TARGET_SPEEDUP
    print(f"speedup --jobs 2 over --jobs 1: {speedup:.2f}x")
    print(f"target {TARGET_S_PER_SUBMISSION} s/submission with --jobs 2: {'met' if met_time else 'MISSED'} "
          f"({per_submission:.3f}); target {TARGET_SPEEDUP}x speedup: {'met' if met_speedup else 'MISSED'} ({speedup:.2f}x)")

    result = {
        "lab": args.lab, "submissions": args.count, "with_mutant": mutated, "device": args.device,
        "cpu_cores": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
        "seconds": {f"jobs_{jobs}": round(seconds, 3) for jobs, seconds in figures.items()},
        "seconds_per_submission": {f"jobs_{jobs}": round(seconds / args.count, 4) for jobs, seconds in figures.items()},
        "speedup_jobs_2_over_1": round(speedup, 3),
        "targets": {"max_s_per_submission_jobs_2": TARGET_S_PER_SUBMISSION, "min_speedup": TARGET_SPEEDUP,
                    "met": met_time and met_speedup},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")
    return 1 if args.check and not (met_time and met_speedup) else 0


if __name__ == "__main__":
    sys.exit(main())
