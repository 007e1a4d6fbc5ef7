"""Unit tests of the resume-training lab's shipped run (labs/resume-training/public/resumelab.py).

The lab's checks lean on what this file promises: the data never changes, `build` is a fresh and
deterministic start, a training step draws from torch's, Python's and NumPy's generators, and a
scheduled crash fires once, in the middle of a step, before the update.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

from grader.testing import trusted_public_module

PUBLIC = Path(__file__).resolve().parents[2] / "labs" / "resume-training" / "public"


def _load():
    """The lab's public/ module, loaded the way its checks load it (no clash with other labs)."""
    return trusted_public_module(PUBLIC.parent, "resumelab")


lab = _load()


@pytest.fixture(autouse=True)
def _no_crash_left_behind():
    lab.crash_after(None)
    yield
    lab.crash_after(None)


def _batch(config, start=0):
    x, y = lab.make_dataset(config).tensors
    return x[start : start + config.batch_size], y[start : start + config.batch_size]


def _same(tensors, others) -> bool:
    return all(torch.equal(a, b) for a, b in zip(list(tensors), list(others), strict=True))


def _generator_states():
    return torch.get_rng_state(), random.getstate(), np.random.get_state()[1].copy()


# -- the data --------------------------------------------------------------------------------------
def test_dataset_is_fixed_whatever_the_global_generators():
    config = lab.Config()
    torch.manual_seed(1)
    first = lab.make_dataset(config).tensors
    torch.manual_seed(2)
    torch.rand(100)
    second = lab.make_dataset(lab.Config(seed=5)).tensors  # the run's seed does not change the data
    assert _same(first, second)
    x, y = first
    assert x.shape == (config.num_examples, lab.NUM_FEATURES) and y.shape == (config.num_examples,)
    assert y.dtype == torch.int64


def test_every_class_is_present_and_a_sign_flip_keeps_the_label():
    x, y = lab.make_dataset(lab.Config()).tensors
    counts = torch.bincount(y, minlength=lab.NUM_CLASSES)
    assert len(counts) == lab.NUM_CLASSES and int(counts.min()) >= 15, f"unbalanced classes {counts.tolist()}"
    edges = torch.tensor([2.2, 2.7, 3.2])
    assert torch.equal(torch.bucketize((-x).norm(dim=1), edges), y), "the flip augmentation must keep labels"


# -- build ------------------------------------------------------------------------------------------
def test_build_is_deterministic_and_seeded_by_the_config():
    a, _, _ = lab.build(lab.Config(seed=3))
    torch.rand(10)  # whatever ran in between
    b, _, _ = lab.build(lab.Config(seed=3))
    c, _, _ = lab.build(lab.Config(seed=4))
    assert _same(a.parameters(), b.parameters())
    assert not _same(a.parameters(), c.parameters())


def test_schedule_warms_up_then_decays_to_a_tenth():
    config = lab.Config()
    factor = lab.warmup_cosine(config)
    assert factor(0) == pytest.approx(1 / config.warmup_steps)
    assert factor(config.warmup_steps - 1) == pytest.approx(1.0)
    assert factor(config.warmup_steps) == pytest.approx(1.0)
    assert factor(config.total_steps) == pytest.approx(0.1)
    later = [factor(s) for s in range(config.warmup_steps, config.total_steps + 1)]
    assert all(a >= b for a, b in zip(later, later[1:], strict=False)), "the cosine part must never increase"
    _, optimizer, scheduler = lab.build(config)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(config.lr / config.warmup_steps)
    assert isinstance(optimizer, torch.optim.AdamW)


# -- a training step ----------------------------------------------------------------------------------
def test_train_step_trains_and_returns_the_loss_before_the_update():
    config = lab.Config()
    model, optimizer, scheduler = lab.build(config)
    before = [p.detach().clone() for p in model.parameters()]
    loss = lab.train_step(model, optimizer, scheduler, _batch(config))
    assert isinstance(loss, float) and 0.5 < loss < 3.0
    assert not _same(before, model.parameters()), "the step must update the weights"
    assert scheduler.last_epoch == 1
    assert set(optimizer.state[next(model.parameters())]) == {"step", "exp_avg", "exp_avg_sq"}


def test_train_step_draws_from_all_three_generators():
    """The premise of the RNG checks: a checkpoint without Python's or NumPy's state changes the run."""
    config = lab.Config()
    model, optimizer, scheduler = lab.build(config)
    torch_before, python_before, numpy_before = _generator_states()
    lab.train_step(model, optimizer, scheduler, _batch(config))
    torch_after, python_after, numpy_after = _generator_states()
    assert not torch.equal(torch_before, torch_after), "dropout and the noise draw from torch"
    assert python_before != python_after, "the flip draws from Python's random"
    assert not np.array_equal(numpy_before, numpy_after), "the noise scale draws from NumPy"


@pytest.mark.parametrize("generator", ["torch", "python", "numpy"])
def test_each_generator_changes_the_step(generator):
    """Same weights, same batch: reseeding any one generator alone gives another loss."""
    config = lab.Config()
    losses = []
    for other in (False, True):
        model, optimizer, scheduler = lab.build(config)
        if other:
            {"torch": lambda: torch.manual_seed(99), "python": lambda: random.seed(99),
             "numpy": lambda: np.random.seed(99)}[generator]()
        losses.append([lab.train_step(model, optimizer, scheduler, _batch(config, 16 * i)) for i in range(4)])
    assert losses[0] != losses[1]


def test_same_start_same_batches_is_bit_identical():
    """The lab's promise that bit-identical is reachable: nothing else in the step is random."""
    config = lab.Config()
    runs = []
    for _ in range(2):
        model, optimizer, scheduler = lab.build(config)
        losses = [lab.train_step(model, optimizer, scheduler, _batch(config, 16 * (i % 6))) for i in range(8)]
        runs.append((losses, [p.detach().clone() for p in model.parameters()]))
    assert runs[0][0] == runs[1][0]
    assert _same(runs[0][1], runs[1][1])


# -- the simulated crash ------------------------------------------------------------------------------
def test_crash_fires_once_after_the_scheduled_steps_before_the_update():
    config = lab.Config()
    model, optimizer, scheduler = lab.build(config)
    lab.crash_after(2)
    lab.train_step(model, optimizer, scheduler, _batch(config))
    lab.train_step(model, optimizer, scheduler, _batch(config))
    weights = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(lab.SimulatedCrash):
        lab.train_step(model, optimizer, scheduler, _batch(config))
    assert _same(weights, model.parameters()), "the crash comes before the update"
    assert all(p.grad is not None for p in model.parameters()), "the crash comes after the backward pass"
    assert scheduler.last_epoch == 2
    lab.train_step(model, optimizer, scheduler, _batch(config))  # fired once: the next step runs
    assert scheduler.last_epoch == 3


def test_crash_after_zero_and_cancel():
    config = lab.Config()
    model, optimizer, scheduler = lab.build(config)
    lab.crash_after(0)
    with pytest.raises(lab.SimulatedCrash):
        lab.train_step(model, optimizer, scheduler, _batch(config))
    lab.crash_after(1)
    lab.crash_after(None)
    for _ in range(3):
        lab.train_step(model, optimizer, scheduler, _batch(config))
