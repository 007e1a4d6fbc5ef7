"""Trusted helpers of the accumulate-and-clip checks: the lab's own acclab.py, the reference steps, comparisons.

`acclab.py` is imported here from the lab folder, not from the submission's copy, so the reference
model, batches, loss and the torch clipping below are the lab's, whatever the notebook does to its
own copy. The submission's model is built by its acclab and then loaded with the trusted weights,
and its parameters after a step are read back as plain tensors: no number the submission reports
about itself enters the comparison of updates.

Everything runs in float64: the float32 round-off of a correct step in another order is around 1e-7
of the update, close to the smallest mistakes worth catching, while in float64 any difference above
1e-9 is a real one.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from grader.testing import trusted_public_module

DTYPE = torch.float64
LR = 1.0  # SGD without momentum: the update is exactly -LR x gradient, so a wrong scale shows 1:1


def _load_acclab(lab_dir):
    return trusted_public_module(lab_dir, "acclab")


def flat(tensors) -> torch.Tensor:
    """Every tensor flattened into one float64 vector, in order."""
    return torch.cat([t.detach().to(torch.float64).flatten() for t in tensors])


def relative_error(got: torch.Tensor, expected: torch.Tensor) -> float:
    return float((got - expected).norm() / expected.norm())


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    if float(a.norm()) == 0.0 or float(b.norm()) == 0.0:
        return 0.0
    return float(a @ b / (a.norm() * b.norm()))


def as_number(value, what: str) -> float:
    """A returned loss or norm as a float: a Python number or a one-element tensor (on any device)."""
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return float(value.detach().double().cpu())
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    kind = f"a tensor of shape {tuple(value.shape)}" if isinstance(value, torch.Tensor) else f"a {type(value).__name__}"
    raise AssertionError(f"{what}: expected a number (a float or a 0-dim tensor), got {kind}.")


class Lab:
    """The trusted side of the lab: reference steps here, and the student's steps over the channel."""

    lr = LR

    def __init__(self, acclab):
        self.acclab = acclab

    # -- the trusted reference ------------------------------------------------------------------
    def initial_state(self, seed: int, device) -> dict[str, torch.Tensor]:
        model = self.acclab.make_model(seed=seed).to(device=device, dtype=DTYPE)
        return {name: p.detach().clone() for name, p in model.named_parameters()}

    def gradient(self, state, tokens, targets, device, weights=None) -> dict:
        """Gradient (one flat vector), loss and norm of the whole batch's mean token loss, at `state`.

        `weights` (a list of (micro_batch_slice, weight)) builds a wrong loss instead, a weighted sum
        of micro-batch mean losses, to recognise a student's mistake by its result.
        """
        model = self.acclab.make_model().to(device=device, dtype=DTYPE)
        model.load_state_dict(state)
        if weights is None:
            loss = self.acclab.lm_loss(model(tokens), targets)
        else:
            loss = sum(w * self.acclab.lm_loss(model(tokens[part]), targets[part]) for part, w in weights)
        loss.backward()
        grads = [p.grad for p in model.parameters()]
        return {"loss": float(loss), "grad": flat(grads), "norm": float(flat(grads).norm())}

    def reference_update(self, state, tokens, targets, device, max_norm=None) -> dict:
        """The plain step on the whole batch with SGD(lr=LR), clipped by torch when max_norm is given."""
        model = self.acclab.make_model().to(device=device, dtype=DTYPE)
        model.load_state_dict(state)
        optimizer = torch.optim.SGD(model.parameters(), lr=LR)
        loss = self.acclab.lm_loss(model(tokens), targets)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), math.inf if max_norm is None else max_norm)
        optimizer.step()
        update = flat(model.state_dict()[name] - state[name] for name in state)
        return {"update": update, "loss": float(loss), "norm": float(norm)}

    # -- the student's side -----------------------------------------------------------------------
    def remote_model(self, submission, device, state):
        """The lab's TinyLM built in the submission process, in float64 on `device`, holding `state`."""
        model = submission.module("acclab").make_model()
        model.to(device=device, dtype=DTYPE)
        model.load_state_dict(state)
        model.seen_batch_sizes = []
        return model

    def student_step(self, submission, device, state, tokens, targets, micro_batch_size, max_norm=None) -> dict:
        """Run accumulated_step with SGD(lr=LR) there; returns its update (read back), result and forward sizes."""
        model = self.remote_model(submission, device, state)
        optimizer = submission.module("torch.optim").SGD(model.parameters(), lr=LR)
        result = submission.accumulated_step(model, optimizer, tokens, targets, micro_batch_size, max_norm=max_norm)
        after = model.state_dict()
        missing = [name for name in state if name not in after]
        if missing:
            raise AssertionError(f"after accumulated_step the model has no parameter(s) {missing}; expected the "
                                 "parameters it had before. Likely cause: the step replaced the model's modules.")
        update = flat(after[name].to(state[name].device) - state[name] for name in state)
        return {"update": update, "result": result, "seen": list(model.seen_batch_sizes)}


@pytest.fixture(scope="session")
def lab(lab_dir) -> Lab:
    return Lab(_load_acclab(lab_dir))


@pytest.fixture(scope="session")
def helpers():
    return SimpleNamespace(relative_error=relative_error, cosine=cosine, as_number=as_number)
