"""Trusted helpers of the ddp-on-cpu checks: the lab's ddplab loaded here, the ring's inputs and one shared run.

Where things run. The ranks are processes forked by the submission process (through the lab's
copy of ddplab.py there), so the results and the traffic counts come back from the submission
like any other value. The references never do: the sums, the mean gradients, the seeded weights
and the single-process training are all computed here, with the trusted copy of ddplab loaded
from the lab folder. The traffic counts are measured inside the submission by ddplab's wrapper of
ProcessGroup.send: they catch honest mistakes (a naive all-reduce, dist.all_reduce inside the
ring), not a notebook that sets out to forge them.

CPU only (lab.yaml says so): every tensor is created on the CPU, whatever `device` says.
"""

from __future__ import annotations

import contextlib

import pytest
import torch

from grader.channel import SubmissionError
from grader.testing import trusted_public_module

RING_WORLD_SIZES = (2, 3, 4)  # 2 is the setup; 3 and 4 tell a ring from a naive all-reduce
RING_TIMEOUT_S = 10.0  # a lab-sized ring takes milliseconds; ten seconds is a deadlock


def _load_trusted_ddplab(lab_dir):
    return trusted_public_module(lab_dir, "ddplab")


@contextlib.contextmanager
def ranks_running(what: str):
    """Turn a rank's failure (ddplab.RankFailed in the submission) into a failed check that says what ran.

    ddplab's message already names the rank, the error and the student's frames inside that rank;
    the submission-side traceback would only repeat it from ddplab's own frames.
    """
    try:
        yield
    except SubmissionError as error:
        if error.type_name != "RankFailed":
            raise
        raise AssertionError(f"{what}: {error.message}") from None


@pytest.fixture(scope="session")
def failing_rank_says():
    """`ranks_running` for the checks (a check file cannot import conftest under --import-mode=importlib)."""
    return ranks_running


@pytest.fixture(scope="session")
def ddplab(lab_dir):
    """The lab's own ddplab.py, imported on the trusted side (the model, the data, the reference training)."""
    return _load_trusted_ddplab(lab_dir)


def ring_cases(world_size: int) -> list[tuple[str, list[torch.Tensor]]]:
    """(description, one input per rank) for every case run on `world_size` ranks.

    A private generator: the inputs do not depend on which check happens to run first.
    """
    generator = torch.Generator().manual_seed(100 + world_size)
    cases = [
        ("12 float32 values", lambda: torch.randn(12, generator=generator)),
        ("a (3, 7) float64 tensor (21 values)", lambda: torch.randn(3, 7, dtype=torch.float64, generator=generator)),
        ("1001 float32 values", lambda: torch.randn(1001, generator=generator)),
        ("10 int64 values", lambda: torch.randint(-1000, 1000, (10,), generator=generator)),
    ]
    return [(what, [make() for _ in range(world_size)]) for what, make in cases]


@pytest.fixture(scope="session")
def ring_runs(submission):
    """The student's ring_all_reduce run once on 2, 3 and 4 ranks, shared by the three ring checks.

    {world_size: [(description, inputs per rank, runs per rank)]}, each run as ddplab.all_reduce_trial
    returns it. One run, three properties: a deadlocked ring costs one time-out, not three. (pytest
    keeps a session fixture's exception too, so every ring check reports the same failure.)
    """
    remote = submission.module("ddplab")
    ring = submission.ring_all_reduce
    runs = {}
    for world_size in RING_WORLD_SIZES:
        cases = ring_cases(world_size)
        with submission.timeout(RING_TIMEOUT_S + 15), ranks_running(f"ring_all_reduce on {world_size} ranks"):
            trial = remote.all_reduce_trial(ring, [inputs for _, inputs in cases], timeout_s=RING_TIMEOUT_S)
        runs[world_size] = [(what, inputs, trial[index]) for index, (what, inputs) in enumerate(cases)]
    return runs
