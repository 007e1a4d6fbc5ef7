"""Checks of save_checkpoint / load_checkpoint: a fresh run that loads a checkpoint is the saved run.

Each check trains the lab's model a few steps in the submission, saves, builds fresh objects with
another seed (so nothing is right by accident), loads, and compares what the objects report.
"""

import torch

SAVED_STEP = 7


def _saved_then_loaded(run, name: str, steps: int = SAVED_STEP):
    """(original objects, loaded objects, the step load_checkpoint returned); saved after `steps` steps."""
    original = run.build(seed=11)
    run.steps(*original, count=steps)
    path = f"check-{name}.pt"
    run.submission.save_checkpoint(path, *original, steps)
    fresh = run.build(seed=12)
    returned = run.submission.load_checkpoint(path, *fresh)
    return original, fresh, returned


def test_checkpoint_model_and_optimizer(run):
    original, fresh, returned = _saved_then_loaded(run, "model")
    (model, optimizer, _), (model2, optimizer2, _) = original, fresh
    assert type(returned) is int and returned == SAVED_STEP, (
        f"load_checkpoint(path, model, optimizer, scheduler): expected it to return the saved step, the int "
        f"{SAVED_STEP}, got {returned!r}. The step is where the run goes on: it gives the epoch and the batch in "
        "the epoch, so save it in the checkpoint and return it (as an int) from load_checkpoint."
    )

    problem = run.diff(model2.state_dict(), model.state_dict(), "model.state_dict()")
    assert problem is None, (
        f"after load_checkpoint, the model differs from the one that was saved: {problem}. Save "
        "model.state_dict() and restore it with model.load_state_dict() into the model you are given."
    )

    expected = optimizer.state_dict()
    got = optimizer2.state_dict()
    if not got["state"]:
        raise AssertionError(
            "after load_checkpoint, the optimizer has no state: AdamW's moment estimates (exp_avg, exp_avg_sq) and "
            f"its step count after {SAVED_STEP} steps are missing, so it restarts from zero. Its first update after "
            "the resume then moves every weight by about the full learning rate (bias correction of a first step), "
            "a jump the uninterrupted run never makes. Save optimizer.state_dict() and restore it with "
            "optimizer.load_state_dict()."
        )
    problem = run.diff(got, expected, "optimizer.state_dict()")
    assert problem is None, (
        f"after load_checkpoint, the optimizer differs from the one that was saved: {problem}. Save the whole "
        "optimizer.state_dict() (its 'state' holds the moments and step per parameter, 'param_groups' the "
        "learning rate and other settings) and restore it with optimizer.load_state_dict()."
    )


def test_checkpoint_scheduler(run):
    (_, optimizer, scheduler), (_, optimizer2, scheduler2), _ = _saved_then_loaded(run, "scheduler")
    want_step, want_lr = scheduler.state_dict()["last_epoch"], scheduler.get_last_lr()
    have_step, have_lr = scheduler2.state_dict().get("last_epoch"), scheduler2.get_last_lr()
    assert have_step == want_step and have_lr == want_lr, (
        f"after load_checkpoint, the scheduler is at step {have_step!r} with learning rate {have_lr!r}; the saved "
        f"one was at step {want_step} with {want_lr}. "
        "The schedule started over: the warmup runs a second time in the middle of training, and every later "
        "learning rate is off. Save scheduler.state_dict() and restore it with scheduler.load_state_dict()."
    )
    # The learning rates of the next steps follow from the restored position.
    for step in range(1, 6):
        scheduler.step()
        scheduler2.step()
        want = optimizer.state_dict()["param_groups"][0]["lr"]
        have = optimizer2.state_dict()["param_groups"][0]["lr"]
        assert have == want, (
            f"{step} scheduler step(s) after load_checkpoint, the learning rate is {have!r}, expected {want!r}. "
            "Likely cause: the scheduler's state is restored only in part; use scheduler.load_state_dict() with "
            "what scheduler.state_dict() returned."
        )


def test_checkpoint_rng(run, device):
    (model, optimizer, scheduler) = run.build(seed=21)
    run.steps(model, optimizer, scheduler, count=3)
    run.submission.save_checkpoint("check-rng.pt", model, optimizer, scheduler, 3)
    torch_module = run.submission.module("torch")
    python_random = run.submission.module("random")
    numpy_random = run.submission.module("numpy.random")

    def draws():
        """What each generator gives next: the randomness of the next training step."""
        drawn = {
            "torch (CPU)": torch_module.rand(6),
            "Python's random": [python_random.random() for _ in range(3)],
            "NumPy's global generator": numpy_random.rand(4).tolist(),
        }
        if device.type == "cuda":
            drawn["torch (CUDA)"] = torch_module.rand(6, device=str(device))
        return drawn

    expected = draws()  # what the saved run would have drawn next
    fresh = run.build(seed=23)  # a new process: its generators are somewhere else
    run.steps(*fresh, count=2)
    run.submission.load_checkpoint("check-rng.pt", *fresh)
    got = draws()

    how = {
        "torch (CPU)": "torch.get_rng_state() / torch.set_rng_state(state)",
        "torch (CUDA)": "torch.cuda.get_rng_state_all() / torch.cuda.set_rng_state_all(states)",
        "Python's random": "random.getstate() / random.setstate(state)",
        "NumPy's global generator": "np.random.get_state() / np.random.set_state(state)",
    }
    wrong = []
    for name, want in expected.items():
        have = got[name]
        same = torch.equal(have.cpu(), want.cpu()) if isinstance(want, torch.Tensor) else have == want
        if not same:
            wrong.append(name)
    assert not wrong, (
        f"after load_checkpoint, the next random numbers of {', '.join(wrong)} are not the ones the saved run "
        "would have drawn next. The lab's step draws from all of them (the noise from torch's CPU generator, dropout "
        "from the generator of the model's device, the sign flip from Python's random, the noise scale from "
        "NumPy), so every step after the resume differs. Save "
        "and restore each generator: "
        + "; ".join(f"{name}: {how[name]}" for name in wrong)
        + ". (To load with weights_only=True, store NumPy's key array as a tensor or a list.)"
    )
