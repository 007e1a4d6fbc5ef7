"""The resume-training lab's small training run: data, model, optimizer, schedule, one step, and a crash.

The notebook and the checks share this file, so both train the same run. It is a miniature of a
real pipeline, and keeps every kind of state a real run has:

* a model with dropout (it draws from the generator of its device on every training step);
* AdamW, whose moment estimates are state that lives outside the model;
* a warmup-then-cosine learning-rate schedule, whose position is state too;
* augmentation on the CPU that draws from torch's CPU generator, Python's `random` and NumPy, as
  real input pipelines do;
* a dataset visited in a shuffled order, a new one every epoch.

`crash_after(n)` makes a later `train_step` raise `SimulatedCrash` in the middle of a step, the way
a lost node or a killed job interrupts a real run: after the backward pass, before the update.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

NUM_FEATURES = 8
NUM_CLASSES = 4
DATA_SEED = 1234  # the data itself never changes; `Config.seed` only changes the training run


@dataclass
class Config:
    seed: int = 0  # seeds the weights, dropout, augmentation and the data order
    device: str = "cpu"
    num_examples: int = 96
    batch_size: int = 16  # 96 // 16 = 6 batches per epoch
    total_steps: int = 30  # 5 epochs
    checkpoint_every: int = 4  # not a divisor of 6 on purpose: most checkpoints fall mid-epoch
    lr: float = 3e-2
    warmup_steps: int = 5


def seed_everything(seed: int) -> None:
    """Seed the three generators the run draws from: Python's, NumPy's, and torch's (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device


def make_dataset(config: Config) -> TensorDataset:
    """`num_examples` points in 8 dimensions, labelled by how far they are from the origin (4 rings).

    Drawn from a private generator with a fixed seed: the same data for every run, whatever the
    global random state. A sign flip keeps the label (|x| does not change), so flipping is a valid
    augmentation.
    """
    generator = torch.Generator().manual_seed(DATA_SEED)
    x = torch.randn(config.num_examples, NUM_FEATURES, generator=generator)  # (N, 8)
    radius = x.norm(dim=1)  # (N,)
    edges = torch.tensor([2.2, 2.7, 3.2])  # about a quarter of 8-d standard normals in each ring
    y = torch.bucketize(radius, edges)  # (N,) int64 in 0..3
    return TensorDataset(x, y)


class TinyNet(nn.Module):
    """8 -> 32 -> 4 classifier with dropout; x (B, 8) -> logits (B, 4)."""

    def __init__(self, hidden: int = 32, dropout: float = 0.1):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(NUM_FEATURES, hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, NUM_CLASSES),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def warmup_cosine(config: Config):
    """Learning-rate factor per step: linear warmup, then cosine decay to 10% at `total_steps`."""

    def factor(step: int) -> float:
        if step < config.warmup_steps:
            return (step + 1) / config.warmup_steps
        progress = min(1.0, (step - config.warmup_steps) / max(1, config.total_steps - config.warmup_steps))
        return 0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


def build(config: Config):
    """Seed everything, then a fresh (model, optimizer, scheduler) on `config.device`.

    This is what a training script does when it starts, and so also when it restarts after a
    crash: the objects come back in their initial state, and only a checkpoint can move them on.
    """
    seed_everything(config.seed)
    model = TinyNet().to(config.device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=0.01)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(config))
    return model, optimizer, scheduler


class SimulatedCrash(RuntimeError):
    """Raised by `train_step` in the middle of a step, when `crash_after` scheduled it."""


_crash_countdown: int | None = None  # steps that may still complete before the crash; None = no crash


def crash_after(steps: int | None) -> None:
    """Let the next `steps` calls of `train_step` complete; the one after raises `SimulatedCrash`.

    `crash_after(None)` cancels a scheduled crash. A crash fires once.
    """
    global _crash_countdown
    _crash_countdown = None if steps is None else int(steps)


def _crash_now() -> bool:
    global _crash_countdown
    if _crash_countdown is None:
        return False
    if _crash_countdown == 0:
        _crash_countdown = None
        return True
    _crash_countdown -= 1
    return False


def augment(x: torch.Tensor) -> torch.Tensor:
    """Random sign flip (Python's `random`) and noise of a random scale (NumPy, then torch)."""
    if random.random() < 0.5:
        x = -x
    scale = float(np.random.uniform(0.0, 0.1))
    return x + scale * torch.randn_like(x)


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, scheduler, batch) -> float:
    """One optimizer step on one batch (x (B, 8), y (B,)); returns the loss before the update.

    The batch is augmented on the CPU, as input pipelines do (so torch's CPU generator matters on
    every device), then moved to the model's device, where dropout draws from that device's
    generator. The scheduler steps once per optimizer step.
    """
    x, y = batch
    device = next(model.parameters()).device
    x = augment(x.cpu())
    x, y = x.to(device), y.to(device)
    model.train()
    loss = F.cross_entropy(model(x), y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if _crash_now():
        raise SimulatedCrash("simulated crash in the middle of a training step (scheduled with crash_after)")
    optimizer.step()
    scheduler.step()
    return loss.item()
