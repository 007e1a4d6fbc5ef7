"""Benchmark: wall time and peak memory of `labs grade` against the floor, on one lab's solution.

The floor is the least any grader could do: one plain Python process that imports torch, execs
the submission's code cells and runs the same check functions in-process (no isolation). We run
each command N times (median) and sample the memory of its whole process tree every 10 ms:

- PSS (proportional set size) summed over the tree: physical memory, with pages shared between
  processes (torch's libraries, the copy-on-write pages a fork shares) counted once in total.
  This is the figure the target is judged by.
- RSS summed over the tree, for reference: it counts shared pages once per process, so it
  overstates what a forking grader really uses.

Usage: python bench/grade_latency.py [--lab attention-from-scratch] [--runs 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

FLOOR = r'''
import sys, json, time, inspect, importlib.util, types, contextlib, random
import torch, numpy
cells = json.load(open(sys.argv[1]))
namespace = {"__name__": "__main__"}
for source in cells:
    try:
        exec(compile(source, "<cell>", "exec"), namespace)
    except Exception:
        pass

class Local:
    """The same surface as the grader's `submission`, without a process boundary."""
    def __getattr__(self, name):
        return namespace[name]
    def __getitem__(self, name):
        return namespace[name]
    def has(self, name):
        return name in namespace
    def module(self, name):
        return importlib.import_module(name)
    def signature(self, name):
        return str(inspect.signature(namespace[name] if isinstance(name, str) else name))
    @contextlib.contextmanager
    def timeout(self, seconds):
        yield
    @property
    def cell_errors(self):
        return []
    def backward(self, fn, *args, grad_output=None, params_of=None, **kwargs):
        args = [a.detach().requires_grad_(True) if isinstance(a, torch.Tensor) and a.is_floating_point() else a for a in args]
        module = params_of if params_of is not None else fn
        params = dict(module.named_parameters()) if isinstance(module, torch.nn.Module) else {}
        for p in params.values():
            p.grad = None
        out = fn(*args, **kwargs)
        out.backward(grad_output if grad_output is not None else torch.ones_like(out))
        return {"output": out.detach(), "grads": [a.grad if isinstance(a, torch.Tensor) else None for a in args],
                "param_grads": {k: p.grad for k, p in params.items()}}

sys.path.insert(0, sys.argv[3])
fixtures = {"submission": Local(), "device": torch.device("cpu"), "submission_source": "\n".join(cells),
            "lab_dir": __import__("pathlib").Path(sys.argv[4])}
failures = 0
for path in sorted(__import__("pathlib").Path(sys.argv[2]).glob("test_*.py")):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for name, fn in vars(module).items():
        if name.startswith("test_") and callable(fn):
            if getattr(fn, "pytestmark", None) and any(m.name == "cuda" for m in fn.pytestmark):
                continue
            random.seed(0); numpy.random.seed(0); torch.manual_seed(0)
            params = inspect.signature(fn).parameters
            try:
                fn(**{p: fixtures[p] for p in params})
            except Exception as exc:
                failures += 1
print("floor failures:", failures)
'''


def _tree(root: int) -> list[int]:
    from grader.sandbox import descendants

    return [root, *descendants(root)]


def _memory(pids: list[int]) -> tuple[int, int]:
    pss = rss = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as handle:
                for line in handle:
                    if line.startswith("Pss:"):
                        pss += int(line.split()[1]) * 1024
                    elif line.startswith("Rss:"):
                        rss += int(line.split()[1]) * 1024
        except OSError:
            continue
    return pss, rss


def measure(command: list[str], env: dict | None = None) -> dict:
    """Wall time and the tree's peak PSS/RSS of one run of `command`."""
    peak = {"pss": 0, "rss": 0}
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    done = threading.Event()

    def sample():
        while not done.is_set():
            pss, rss = _memory(_tree(process.pid))
            peak["pss"], peak["rss"] = max(peak["pss"], pss), max(peak["rss"], rss)
            time.sleep(0.01)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    output, _ = process.communicate()
    wall = time.perf_counter() - started
    done.set()
    sampler.join()
    return {"wall_s": wall, "peak_pss_mb": peak["pss"] / 2**20, "peak_rss_mb": peak["rss"] / 2**20,
            "returncode": process.returncode, "output": output.decode(errors="replace")[-400:]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lab", default="attention-from-scratch")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    sys.path.insert(0, str(ROOT))
    from grader.notebook import graded_cells
    from grader.registry import find_lab

    lab = find_lab(args.lab)
    cells = [cell.source for cell in graded_cells(lab.solution_path)]
    with tempfile.TemporaryDirectory() as tmp:
        cells_file = Path(tmp) / "cells.json"
        cells_file.write_text(json.dumps(cells))
        floor_script = Path(tmp) / "floor.py"
        floor_script.write_text(FLOOR)
        workdir = Path(tmp) / "work"
        workdir.mkdir()
        for source in lab.public_files():
            target = workdir / source.relative_to(lab.public_dir)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(source.read_bytes())
        floor_cmd = [sys.executable, str(floor_script), str(cells_file), str(lab.checks_dir), str(workdir), str(lab.dir)]
        labs_cmd = [sys.executable, "-m", "cli", "grade", args.lab, "--submission", str(lab.solution_path), "--device", "cpu", "-q"]
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        # The floor with torch's default threads, and with one thread (what `labs grade` uses; on a
        # 2-core machine it is the faster floor, so the stricter comparison).
        env_one_thread = {**env, "OMP_NUM_THREADS": "1"}
        measure(floor_cmd, env)  # warm the page cache for both
        measure(labs_cmd, env)
        floor_runs, floor1_runs, labs_runs = [], [], []
        for _ in range(args.runs):  # interleaved, so drift in machine load hits all alike
            floor_runs.append(measure(floor_cmd, env))
            floor1_runs.append(measure(floor_cmd, env_one_thread))
            labs_runs.append(measure(labs_cmd, env))
    if labs_runs[-1]["returncode"] != 0:
        print("labs grade did not give full marks:", labs_runs[-1]["output"])
    summary = {}
    for name, runs in (("floor", floor_runs), ("floor 1 thr", floor1_runs), ("labs grade", labs_runs)):
        summary[name] = {key: statistics.median(run[key] for run in runs) for key in ("wall_s", "peak_pss_mb", "peak_rss_mb")}
    best_floor = min(summary["floor"]["wall_s"], summary["floor 1 thr"]["wall_s"])
    ratio = summary["labs grade"]["wall_s"] / best_floor
    extra_pss = summary["labs grade"]["peak_pss_mb"] - min(summary["floor"]["peak_pss_mb"], summary["floor 1 thr"]["peak_pss_mb"])
    print(f"lab: {args.lab}, {args.runs} runs each, medians")
    print(f"{'':12} {'wall s':>8} {'peak PSS MB':>12} {'peak RSS MB':>12}")
    for name, row in summary.items():
        print(f"{name:12} {row['wall_s']:8.2f} {row['peak_pss_mb']:12.0f} {row['peak_rss_mb']:12.0f}")
    print(f"labs grade / faster floor wall time: {ratio:.2f}x (target <= 1.5x)")
    print(f"labs grade extra peak PSS: {extra_pss:+.0f} MB (target <= +150 MB)")
    if args.json:
        args.json.write_text(json.dumps({"lab": args.lab, "runs": args.runs, "summary": summary,
                                         "wall_ratio": ratio, "extra_pss_mb": extra_pss}, indent=2))


if __name__ == "__main__":
    main()
