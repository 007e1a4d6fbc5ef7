"""Trusted helpers shared by the resume-training checks: the lab's run in the submission, and exact comparisons.

The training itself runs in the submission (it is the student's loop); these helpers only start it
there, read its state back as plain data and compare it here, bit for bit. The submission's
`resumelab` is the lab's own file, copied next to the notebook; a check reaches it with
`submission.module("resumelab")` to build the run, schedule a crash and reseed generators.

A checkpoint file is written by the student's code, so it is never opened here: every comparison
is between states the submission's objects report after loading it.
"""

from __future__ import annotations

import math

import pytest
import torch

from grader.channel import SubmissionError

TOTAL_STEPS = 30  # test_resume.py relies on these three numbers too
CHECKPOINT_EVERY = 4
BATCHES_PER_EPOCH = 6  # the lab's 96 examples in batches of 16


def first_difference(got, expected, where: str = "") -> str | None:
    """Where two nested states (dicts, lists, tensors, numbers) first differ, or None if bit-identical."""
    if isinstance(expected, torch.Tensor):
        if not isinstance(got, torch.Tensor):
            return f"{where}: expected a tensor, got {type(got).__name__}"
        if got.shape != expected.shape or got.dtype != expected.dtype:
            return f"{where}: expected {tuple(expected.shape)} {expected.dtype}, got {tuple(got.shape)} {got.dtype}"
        if not torch.equal(got.to(expected.device), expected):
            if expected.is_floating_point():
                worst = float((got.to(expected.device).double() - expected.double()).abs().max())
                return f"{where}: values differ (max abs difference {worst:.3g})"
            return f"{where}: values differ"
        return None
    if isinstance(expected, dict):
        if not isinstance(got, dict):
            return f"{where}: expected a dict, got {type(got).__name__}"
        missing = [key for key in expected if key not in got]
        if missing:
            present = f" (present: {sorted(got, key=str)[:6]})" if got else " (it is empty)"
            return f"{where}: missing {missing[:4]}{present}"
        for key in expected:
            found = first_difference(got[key], expected[key], f"{where}[{key!r}]")
            if found:
                return found
        return None
    if isinstance(expected, (list, tuple)):
        if not isinstance(got, (list, tuple)) or len(got) != len(expected):
            return f"{where}: expected {len(expected)} items, got {got!r:.80}"
        for index, (a, b) in enumerate(zip(got, expected, strict=True)):
            found = first_difference(a, b, f"{where}[{index}]")
            if found:
                return found
        return None
    if isinstance(expected, float) and isinstance(got, float) and math.isnan(expected) and math.isnan(got):
        return None
    if got != expected:
        return f"{where}: expected {expected!r}, got {got!r}"
    return None


class Run:
    """The lab's training run as a check drives it in the submission."""

    def __init__(self, submission, device: torch.device):
        self.submission = submission
        self.device = device
        self.lab = submission.module("resumelab")
        self.lab.crash_after(None)  # a check that failed half-way may have left a crash scheduled

    diff = staticmethod(first_difference)

    def config(self, seed: int):
        return self.lab.Config(seed=seed, device=str(self.device), total_steps=TOTAL_STEPS,
                               checkpoint_every=CHECKPOINT_EVERY)

    def build(self, seed: int):
        """A fresh (model, optimizer, scheduler) of the lab, in the submission."""
        model, optimizer, scheduler = self.lab.build(self.config(seed))
        return model, optimizer, scheduler

    def steps(self, model, optimizer, scheduler, count: int) -> None:
        """`count` training steps with the lab's train_step on batches made here."""
        for _ in range(count):
            # On the CPU, like the dataset's batches: train_step augments there and moves them to the model.
            x = torch.randn(16, 8)  # (B, 8)
            y = torch.randint(0, 4, (16,))  # (B,)
            self.lab.train_step(model, optimizer, scheduler, [x, y])

    def train(self, seed: int, path: str) -> dict:
        """The student's train() to the end; its result, checked against the contract."""
        result = self.submission.train(self.config(seed), path)
        if not isinstance(result, dict) or not {"model", "optimizer", "scheduler", "losses"} <= set(result):
            shown = sorted(result, key=str) if isinstance(result, dict) else type(result).__name__
            raise AssertionError(f"train(config, checkpoint_path): expected a dict with keys 'model', 'optimizer', "
                                 f"'scheduler' and 'losses', got {shown}. Return the objects you trained and "
                                 "{step: loss} for the steps this call ran.")
        losses = result["losses"]
        plain = isinstance(losses, dict) and all(isinstance(k, int) and isinstance(v, float) for k, v in losses.items())
        if not plain:
            raise AssertionError("train(...)['losses']: expected a dict {global step (int): loss (float)}, as returned "
                                 f"by train_step, got {type(losses).__name__} {str(losses)[:120]}")
        return result

    def crash(self, seed: int, path: str, after: int) -> None:
        """The student's train() with a crash scheduled after `after` completed steps of this call."""
        self.lab.crash_after(after)
        try:
            self.submission.train(self.config(seed), path)
        except SubmissionError as exc:  # the student's code raised (a crash or a process death is not caught)
            self.lab.crash_after(None)
            if exc.type_name == "SimulatedCrash":
                return
            raise
        self.lab.crash_after(None)
        raise AssertionError(f"a crash was scheduled after {after} more steps, but train(config, checkpoint_path) "
                             "returned normally. Likely cause: your loop does not call resumelab.train_step for every "
                             "step (that is where the crash happens), or it catches the SimulatedCrash exception. "
                             "Let the exception propagate: a real crash does not ask.")


@pytest.fixture
def run(submission, device) -> Run:
    return Run(submission, device)
