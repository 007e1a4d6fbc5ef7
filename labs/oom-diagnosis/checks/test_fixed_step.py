"""Checks of fixed_train_step: under the budget, the same update as the plain step, the whole batch counted.

What a hostile submission could forge, and what it could not:
- The peak memory is measured by the lab's tracker inside the submission process, because that
  is where the tensors live. Code in that process can patch the tracker, run its work where the
  dispatch mode does not look (another thread), or report any number. So "fits the budget" is
  only as honest as the submission; it is the one thing here that is taken on trust.
- The update is not. The reference step runs here, in the trusted process, on the lab's own
  model, batch and loss. The student's parameters after the step are copied back as plain
  tensors and compared with it. No value the submission reports about itself enters that
  comparison, so a step that shrinks the batch, mis-scales the loss or steps per micro-batch
  fails however it describes itself. The one self-report used is "did bf16/fp16 tensors appear",
  which only widens the tolerance to what bf16 arithmetic needs (3e-2 relative); every mistake
  these checks look for moves the update by far more.
SGD without momentum is used for the update checks: its update is exactly -lr x gradient, so a
wrong scale shows (Adam divides the scale away on its first step).
"""

import torch

from grader.channel import SubmissionError

LR = 0.1
FP32_TOLERANCE = 1e-4  # relative L2 error of the whole update; fp32 accumulation in another order gives ~1e-6
LOW_PRECISION_TOLERANCE = 3e-2  # bf16 autocast gives ~3e-3 on this model


def _student_update(submission, oom, device, state, x, y, watch=True):
    """Run fixed_train_step with SGD in the submission; returns (update as one fp64 vector, used bf16/fp16?).

    With watch=False the step runs without the tracker (faster) and the second value is False.
    """
    remote = submission.module("oomlab")
    model = oom.remote_model(submission, device, state=state)
    optimizer = remote.make_optimizer(model, "sgd", lr=LR)
    if watch:
        report = submission.module("memtrack").measure(submission.fixed_train_step, model, optimizer, x, y, track=[model])
        low_precision = bool(report["low_precision"])
    else:
        submission.fixed_train_step(model, optimizer, x, y)
        low_precision = False
    return oom.flat_update(state, remote.state_of(model)), low_precision


def _relative_error(got, expected) -> float:
    return float((got - expected).norm() / expected.norm())


def test_fixed_step_fits_budget(submission, device, oom):
    """At the failing configuration (batch 2048, Adam) the step's peak stays within the 6 MiB budget."""
    config = oom.lab.CONFIG
    remote = submission.module("oomlab")
    model = oom.remote_model(submission, device)
    optimizer = remote.make_optimizer(model, "adam")
    x, y = oom.lab.make_batch(seed=41, device=device)
    # A first step outside the tracker creates Adam's state: the budget is for a step in the middle of a run.
    submission.fixed_train_step(model, optimizer, *oom.lab.make_batch(seed=42, device=device))
    try:
        report = submission.module("memtrack").measure(submission.fixed_train_step, model, optimizer, x, y,
                                                       budget_bytes=config.budget_bytes, track=[model, optimizer, x, y])
    except SubmissionError as error:
        if error.type_name != "OutOfMemoryError":
            raise
        raise AssertionError(
            f"fixed_train_step ran out of memory at the failing configuration (batch {config.batch_size}, Adam, budget "
            f"{oom.fmt(config.budget_bytes)}): {error.message}\nLikely cause: the activations of too many examples are "
            "alive at once. Run the batch as micro-batches (e.g. 512) with every block checkpointed; check that the "
            "checkpointing really keeps only the block inputs.") from None
    peak, baseline = report["peak_bytes"], report["baseline_bytes"]
    if peak > config.budget_bytes:
        raise AssertionError(f"fixed_train_step peaked at {oom.fmt(peak)}, over the budget of "
                             f"{oom.fmt(config.budget_bytes)}. Likely cause: too many activations alive at once.")
    if peak <= baseline:
        raise AssertionError(
            f"the memory tracker saw no allocation during fixed_train_step (peak {oom.fmt(peak)} = what was there "
            "before); expected the step's activations and gradients to appear. Likely cause: the step did no work "
            "on this thread (threads are not tracked), or returned before training.")


def test_fixed_step_matches_reference_update(submission, device, oom):
    """With SGD, the parameters after fixed_train_step equal those after the plain full-batch step (B=2048 and B=1000)."""
    passed = []
    for batch_size, seed in ((2048, 21), (1000, 22)):
        state = oom.lab.state_of(oom.lab.make_model(seed=seed).to(device))
        x, y = oom.lab.make_batch(batch_size=batch_size, seed=seed, device=device)
        expected = oom.reference_sgd_update(state, x, y, LR, device)
        got, low_precision = _student_update(submission, oom, device, state, x, y)
        tolerance = LOW_PRECISION_TOLERANCE if low_precision else FP32_TOLERANCE
        error = _relative_error(got, expected)
        if error <= tolerance:
            passed.append(batch_size)
            continue
        scale = float(got.norm() / expected.norm())
        cosine = float(got @ expected / (got.norm() * expected.norm())) if got.norm() > 0 else 0.0
        if cosine > 0.99 and abs(scale - 1) > 0.05:
            cause = (f"your update is {scale:.2f}x the reference's, in nearly the same direction (cosine {cosine:.3f}). "
                     "Each micro-batch's mean loss must be multiplied by n_i / B (its share of the batch) before "
                     "backward, and optimizer.step() must run once: k unscaled micro-batches, or k steps, give about "
                     "k times the update.")
        elif passed:
            cause = (f"the step is right for a batch of {passed[0]} but not for {batch_size}, which your micro-batch "
                     "size does not divide evenly. The last micro-batch is smaller: weight each micro-batch's loss by "
                     "n_i / B, not by 1 / (number of micro-batches).")
        else:
            cause = (f"the update points elsewhere (cosine {cosine:.3f} with the reference, length {scale:.2f}x). "
                     "Every example must contribute once, with weight 1/B: zero_grad once before the micro-batches, "
                     "optimizer.step() once after them, and no example left out.")
        method = "bf16/fp16 tensors seen, bf16 tolerance" if low_precision else "fp32"
        raise AssertionError(
            f"fixed_train_step with SGD(lr={LR}) on a batch of {batch_size}: the update differs from the plain "
            f"full-batch step's by {error:.2e} (relative L2; allowed {tolerance:g}, {method}). Likely cause: {cause}")


def test_fixed_step_keeps_effective_batch(submission, device, oom):
    """Every quarter of the batch moves the update exactly as much as in the plain step: nothing dropped, nothing doubled."""
    batch_size, classes, seed = 1024, oom.lab.CONFIG.classes, 31
    state = oom.lab.state_of(oom.lab.make_model(seed=seed).to(device))
    x, y = oom.lab.make_batch(batch_size=batch_size, seed=seed, device=device)
    base_expected = oom.reference_sgd_update(state, x, y, LR, device)
    base_got, low_precision = _student_update(submission, oom, device, state, x, y)
    generator = torch.Generator().manual_seed(seed)
    quarter = batch_size // 4
    influences = []
    for q in range(4):
        # Relabel one quarter of the batch; with SGD the update moves by exactly that quarter's share.
        probe = y.clone()
        shift = torch.randint(1, classes, (quarter,), generator=generator).to(device)
        probe[q * quarter:(q + 1) * quarter] = (y[q * quarter:(q + 1) * quarter] + shift) % classes
        moved_expected = oom.reference_sgd_update(state, x, probe, LR, device) - base_expected
        got, _ = _student_update(submission, oom, device, state, x, probe, watch=False)
        moved_got = got - base_got
        influences.append(float(moved_got @ moved_expected / (moved_expected @ moved_expected)))
    tolerance = 0.05 if low_precision else 0.02  # bf16 autocast measures 1.000 here; the mistakes give 0, 2 or 4
    if all(abs(r - 1) <= tolerance for r in influences):
        return
    shown = ", ".join(f"{r:.2f}" for r in influences)
    ignored = [q for q, r in enumerate(influences) if r < 0.5]
    if ignored:
        ranges = ", ".join(f"{q * quarter}-{(q + 1) * quarter - 1}" for q in ignored)
        used = batch_size - quarter * len(ignored)
        cause = (f"changing the labels of examples {ranges} barely moved your update: the step never learned from "
                 f"them, so the effective batch shrank to at most {used} of {batch_size}. Likely cause: a smaller "
                 "batch (only some micro-batches used), or zero_grad inside the micro-batch loop, which throws away "
                 "the gradients accumulated so far.")
    elif max(influences) - min(influences) <= 2 * tolerance:
        mean = sum(influences) / len(influences)
        cause = (f"every quarter of the batch moved your update {mean:.2f}x as much as it moves the plain step's: "
                 "each example must weigh 1/B. Likely cause: micro-batch losses not scaled by n_i / B (k micro-batches "
                 "give k times the gradient), or optimizer.step() once per micro-batch (k steps instead of one).")
    else:
        cause = ("the quarters of the batch weigh differently in your update; each example must weigh 1/B. Likely "
                 "cause: micro-batches weighted unequally, or a step per micro-batch.")
    raise AssertionError(
        f"influence of each quarter of a batch of {batch_size} on the update of fixed_train_step, relative to the "
        f"plain full-batch step: [{shown}]; expected 1.00 each (tolerance {tolerance}). {cause}")
