"""Trusted helpers shared by the oom-diagnosis checks: the lab's own files, loaded here, and measurements.

`oomlab.py` and `memtrack.py` are imported from the lab folder (not from the submission's copy),
so the reference model, batch, step and measurements below are the lab's, whatever the
submission does to its own copies.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from grader.testing import trusted_public_module


def _load(lab_dir, name: str):
    return trusted_public_module(lab_dir, name)


def _describe(changes: dict, batch_size: int, optimizer: str | None = None) -> str:
    model = "the lab's model" if not changes else "make_model(" + ", ".join(f"{k}={v}" for k, v in changes.items()) + ")"
    return f"{model}, batch {batch_size}" + (f", optimizer {optimizer!r}" if optimizer else "")


def _saved_activation_bytes(oomlab, model, x, y) -> int:
    """What autograd saves for backward in forward + loss: distinct storages, parameters excluded."""
    parameter_storages = {id(p.untyped_storage()) for p in model.parameters()}
    saved: dict[int, int] = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        if id(storage) not in parameter_storages:
            saved[id(storage)] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        loss = oomlab.loss_fn(model(x), y)
    loss.backward()
    return sum(saved.values())


def _measured_breakdown(oomlab, changes: dict, batch_size: int, optimizer: str, device, seed: int = 7) -> dict:
    """Measure, not compute: run one real step and read the bytes off the tensors that exist."""
    model = oomlab.make_model(**changes).to(device)
    x, y = oomlab.make_batch(model_config(oomlab, changes), batch_size=batch_size, seed=seed, device=device)
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    activations = _saved_activation_bytes(oomlab, model, x, y)  # also runs backward
    gradients = sum(p.grad.numel() * p.grad.element_size() for p in model.parameters() if p.grad is not None)
    optim = oomlab.make_optimizer(model, optimizer)
    optim.step()
    state = {id(t.untyped_storage()): t.untyped_storage().nbytes()
             for s in optim.state.values() for t in s.values() if isinstance(t, torch.Tensor)}
    return {"weights": weights, "gradients": gradients, "optimizer_state": sum(state.values()), "activations": activations}


def model_config(oomlab, changes: dict):
    return oomlab.LabConfig(**{**oomlab.CONFIG.__dict__, **changes})


def _remote_model(submission, device, changes: dict | None = None, state: dict | None = None):
    """A model built in the submission process (by the lab's oomlab there), on `device`, holding `state`."""
    remote = submission.module("oomlab")
    model = remote.make_model(**(changes or {}))
    model.to(device)
    if state is not None:
        remote.load_state(model, state)
    return model


def _flat_update(before: dict, after: dict) -> torch.Tensor:
    """after - before, every parameter flattened into one fp64 vector (names in `before`'s order)."""
    missing = [name for name in before if name not in after]
    if missing:
        raise AssertionError(f"the model after your step has no parameter(s) {missing}; expected the same "
                             "parameters as before. Likely cause: the step replaced the model's modules.")
    return torch.cat([(after[name].double().to(before[name].device) - before[name].double()).flatten()
                      for name in before])


def _reference_sgd_update(oomlab, state: dict, x, y, lr: float, device) -> torch.Tensor:
    """The plain full-batch step with SGD (no momentum): update = -lr * mean-loss gradient."""
    model = oomlab.make_model().to(device)
    oomlab.load_state(model, state)
    oomlab.reference_train_step(model, oomlab.make_optimizer(model, "sgd", lr=lr), x, y)
    return _flat_update(state, oomlab.state_of(model))


@pytest.fixture(scope="session")
def oom(lab_dir):
    """Everything trusted a check needs, in one namespace."""
    oomlab = _load(lab_dir, "oomlab")
    memtrack = _load(lab_dir, "memtrack")
    measured: dict[tuple, dict] = {}  # two checks measure the failing configuration; once is enough

    def measured_breakdown(changes: dict, batch_size: int, optimizer: str, device) -> dict:
        key = (tuple(sorted(changes.items())), batch_size, optimizer, str(device))
        if key not in measured:
            measured[key] = _measured_breakdown(oomlab, changes, batch_size, optimizer, device)
        return dict(measured[key])

    return SimpleNamespace(
        lab=oomlab,
        memtrack=memtrack,
        fmt=memtrack.format_bytes,
        describe=_describe,
        measured_breakdown=measured_breakdown,
        remote_model=_remote_model,
        flat_update=_flat_update,
        reference_sgd_update=lambda state, x, y, lr, device: _reference_sgd_update(oomlab, state, x, y, lr, device),
    )
