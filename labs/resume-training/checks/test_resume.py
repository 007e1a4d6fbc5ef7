"""End-to-end checks of train(): crash it, run it again, and it must end exactly where an uninterrupted run ends.

The crash comes from the lab's own train_step (scheduled with resumelab.crash_after), in the middle
of a step, after the backward pass: the same place a lost node or a killed job would stop a run.
The crashed call's objects stay behind in the submission process, like the dead process's memory;
the resumed call must start from what it builds and loads. Before a resume the bit-identity check
reseeds the generators, as a new process would have them elsewhere.
"""

import random

# The run's shape (the checks' Config in conftest.py): 30 steps, a checkpoint every 4, 6 batches per epoch.
TOTAL_STEPS, CHECKPOINT_EVERY, BATCHES_PER_EPOCH = 30, 4, 6

LIKELY_CAUSES = (
    "Likely causes: the optimizer state or the scheduler not saved, a random generator not restored (the step "
    "draws from torch's CPU generator, the model device's, Python's random and NumPy), the data order not "
    "continued, or the saved step off by one; the checkpoint_* and loader_* checks point at the piece."
)


def _first_difference_cause(offset: int) -> str:
    """Why the losses first differ `offset` steps after the resume: each kind of state shows at its own step."""
    if offset == 0:
        return (
            "Nothing has been updated since the resume at that step, so its loss depends only on the weights, the "
            "batch and the random draws. Likely causes: a random generator not restored (the noise draws from "
            "torch's CPU generator, dropout from the model device's, the flip from Python's random, the noise "
            "scale from NumPy); the wrong batch (the epoch restarted or reshuffled instead of continuing at batch "
            f"step % {BATCHES_PER_EPOCH} of the same permutation); a DataLoader without generator=, which draws "
            "from torch's global generator when it is iterated (the uninterrupted run at the epoch's start, the "
            "resumed run at the resume); or the step saved in the checkpoint off by one."
        )
    if offset == 1:
        return (
            "The first step after the resume agreed (same weights, batch and random draws), so its update did not: "
            "AdamW's state (exp_avg, exp_avg_sq and its step count) was not restored, or the learning rate was wrong."
        )
    return (
        f"The first {offset} steps after the resume agreed, so the weights, the batches and the generators were "
        "right at the resume. What shows later: the learning-rate schedule (the first update after a resume uses "
        "the learning rate saved with the optimizer, the scheduler sets every later one, so a schedule that "
        "started over shows here), or the data order at the next epoch (a permutation or a DataLoader that "
        "draws from the global generator)."
    )


def _describe(crashes: tuple[int, ...]) -> str:
    text = f"a run crashed after {crashes[0]} steps"
    for after in crashes[1:]:
        text += f", resumed and crashed again {after} steps later"
    return text + ", then resumed to the end"


def _reference(run, seed: int) -> dict:
    result = run.train(seed, f"reference-{seed}.pt")
    losses = result["losses"]
    assert sorted(losses) == list(range(TOTAL_STEPS)), (
        f"an uninterrupted train(config, checkpoint_path) with total_steps={TOTAL_STEPS} and no checkpoint yet: "
        f"expected losses for steps 0..{TOTAL_STEPS - 1}, got steps {sorted(losses)[:5]}...{sorted(losses)[-3:]} "
        f"({len(losses)} in all). Run exactly config.total_steps optimizer steps, epoch after epoch, and key the "
        "losses by the global step."
    )
    return {
        "losses": losses,
        "model": result["model"].state_dict(),
        "optimizer": result["optimizer"].state_dict(),
        "lr": result["scheduler"].get_last_lr(),
    }


def test_resume_bit_identical(run):
    seed = 7
    reference = _reference(run, seed)
    initial = run.build(seed)[0].state_dict()
    assert run.diff(reference["model"], initial) is not None, (
        "the uninterrupted run ended with the weights it started with: train() must train the model that "
        "build(config) returned, with resumelab.train_step."
    )
    # Mid-epoch between checkpoints, mid-epoch on one, at an epoch boundary, a random step, and two crashes.
    scenarios = [(5,), (9,), (12,), (random.randint(13, 27),), (10, 7)]
    for index, crashes in enumerate(scenarios):
        path = f"resume-{index}.pt"
        for after in crashes:
            run.crash(seed, path, after)
            run.lab.seed_everything(1000 + index)  # the next process starts with other random state
        result = run.train(seed, path)
        what = _describe(crashes)
        losses = result["losses"]
        steps = sorted(losses)
        assert steps and steps[-1] == TOTAL_STEPS - 1, (
            f"{what}: the resumed call should run until step {TOTAL_STEPS - 1}, got losses for steps {steps}. "
            "Continue from the step the checkpoint holds up to config.total_steps."
        )
        for step in steps:
            if losses[step] != reference["losses"].get(step):
                offset = step - steps[0]
                where = (f"at step {step}, the first one after the resume," if offset == 0
                         else f"step {steps[0]} after the resume agrees, but at step {step}" if offset == 1
                         else f"steps {steps[0]}..{step - 1} after the resume agree, but at step {step}")
                raise AssertionError(
                    f"{what}: {where} the loss is {losses[step]!r} where the uninterrupted run had "
                    f"{reference['losses'].get(step)!r}. {_first_difference_cause(offset)}"
                )
        for name, got, expected in (
            ("model.state_dict()", result["model"].state_dict(), reference["model"]),
            ("optimizer.state_dict()", result["optimizer"].state_dict(), reference["optimizer"]),
            ("scheduler.get_last_lr()", result["scheduler"].get_last_lr(), reference["lr"]),
        ):
            problem = run.diff(got, expected, name)
            assert problem is None, (
                f"{what}: the losses agree, but at the end {problem} compared with the uninterrupted run; "
                f"it must be bit-identical. {LIKELY_CAUSES}"
            )


def test_resume_continues(run):
    seed = 3
    path_exists = run.submission.module("os.path").exists
    for after in (22, 9, 2):
        last_checkpoint = after // CHECKPOINT_EVERY * CHECKPOINT_EVERY  # the latest step a checkpoint holds
        path = f"continue-{after}.pt"
        run.crash(seed, path, after)
        if last_checkpoint:
            assert path_exists(path), (
                f"a run crashed after {after} steps left no file at checkpoint_path ({path!r}); a checkpoint of "
                f"step {last_checkpoint} should be there. Call save_checkpoint(checkpoint_path, ...) from train "
                f"after every config.checkpoint_every ({CHECKPOINT_EVERY}) steps."
            )
        steps = sorted(run.train(seed, path)["losses"])
        assert steps and steps == list(range(steps[0], TOTAL_STEPS)), (
            f"after a crash after {after} steps, the resumed call should run each step from where it resumes to "
            f"step {TOTAL_STEPS - 1} once, got losses for steps {steps}."
        )
        start = steps[0]
        if start == 0 and last_checkpoint > 0:
            raise AssertionError(
                f"a run crashed after {after} steps, and the next call started again from step 0, although a "
                f"checkpoint of step {last_checkpoint} was saved: every step was done twice (on a 3-day run, the "
                "3 days). A deterministic run restarted from scratch ends in the same place, so only this shows "
                "it. train must call load_checkpoint when checkpoint_path exists and go on from the step it returns."
            )
        assert last_checkpoint <= start <= after, (
            f"a run crashed after {after} steps (checkpoints every {CHECKPOINT_EVERY} steps, so the latest holds "
            f"step {last_checkpoint}); the resumed call started at step {start}. "
            + (f"It should have resumed at step {last_checkpoint}: save the number of steps done (after the "
               "update, so the checkpoint after step s's update holds s + 1), and save after every "
               "config.checkpoint_every steps." if start < last_checkpoint else
               f"Steps {after}..{start - 1} were never done: a resume cannot start past the crash.")
        )
