"""Checks of accumulated_step: the update of the plain whole-batch step, in micro-batches, clipped once.

The reference step runs here on the lab's TinyLM with the same weights, in float64, with SGD
without momentum (its update is exactly -lr x gradient, so a wrong scale or a wrong weight shows
as it is; Adam would divide a constant factor away) and torch's own clip_grad_norm_.
The student's parameters after their step are read back and compared as one vector:

    relative error = |update_got - update_expected| / |update_expected|

A correct step in float64 lands near 1e-15, one that rounds a weight through float32 near 1e-8;
every mistake these checks look for is above 1e-3 (with clipping active the allowance is 1e-4,
see CLIP_TOLERANCE). When the comparison fails, the student's update
is compared with what each classic mistake would give (computed here too) to name the cause.
"""

from grader.channel import SubmissionError

TOLERANCE = 1e-6  # relative error of the whole update (see above)
# With clipping active the factor max_norm / (norm + 1e-6) enters too, and the gradient norm here is
# about 0.3: leaving out torch's 1e-6 (a fine choice) moves the update by ~3e-6. Clipping mistakes
# move it by more than 1e-2.
CLIP_TOLERANCE = 1e-4
T = 16  # the lab's max_len


def _lengths_short_then_long(batch_size):
    """Real tokens per sequence: a third very short, a third full, a third in between, so micro-batches differ."""
    third = batch_size // 3
    pattern = [2, 3, 2, 4] * third
    short, long = pattern[:third], [16, 15, 16, 14] * third
    middle = [5 + (7 * i) % 10 for i in range(batch_size - 2 * third)]
    return short + long[:third] + middle


def _micro_slices(batch_size, micro_batch_size):
    return [slice(start, min(start + micro_batch_size, batch_size)) for start in range(0, batch_size, micro_batch_size)]


def _mistakes(lab, state, tokens, targets, device, micro_batch_size):
    """{description: update} for the classic weightings of micro-batch mean losses (before any clipping)."""
    B = tokens.shape[0]
    slices = _micro_slices(B, micro_batch_size)
    k = len(slices)
    n_last = int((targets[slices[-1]] != lab.acclab.IGNORE_INDEX).sum())
    n_tokens = int((targets != lab.acclab.IGNORE_INDEX).sum())
    weightings = {
        "each micro-batch's mean loss added up without scaling: k micro-batches give about k times the gradient. "
        "Scale each one by its share of the batch before backward()": [(s, 1.0) for s in slices],
        "each micro-batch's mean loss divided by the number of micro-batches: that weighs every micro-batch "
        "equally, right only when all hold the same number of real tokens (the last one is often smaller, and "
        "sequences differ in length). Weigh micro-batch i by n_i / N, its real target tokens over the batch's":
            [(s, 1.0 / k) for s in slices],
        "each micro-batch's mean loss weighted by its share of the SEQUENCES (b_i / B): right for one label per "
        "example, wrong for tokens, because a micro-batch mean divides by that micro-batch's own token count. "
        "Weigh it by n_i / N (real target tokens), or backpropagate lm_loss(..., reduction='sum') / N":
            [(s, (s.stop - s.start) / B) for s in slices],
        "only the last micro-batch's gradient reached the step: optimizer.zero_grad() inside the loop throws away "
        "what the earlier micro-batches accumulated. Call it once, before the loop": [(slices[-1], n_last / n_tokens)],
    }
    return {cause: -lab.lr * lab.gradient(state, tokens, targets, device, weights)["grad"]
            for cause, weights in weightings.items()}


def _assert_update(lab, helpers, got, expected, what, mistakes=None, extra=""):
    """Fail with the likely cause unless the student's update equals the reference one."""
    error = helpers.relative_error(got, expected)
    if error <= TOLERANCE:
        return
    cause = None
    for description, wrong in (mistakes or {}).items():
        if helpers.relative_error(got, wrong) <= 1e-6:
            cause = description + "."
            break
    if cause is None:
        scale = float(got.norm() / expected.norm())
        direction = helpers.cosine(got, expected)
        if float(got.norm()) == 0.0:
            cause = "the parameters did not move: optimizer.step() was not called (or the gradients were zero)."
        elif direction > 0.99999:
            cause = (f"the update points the right way but is {scale:.3f} times as long: the micro-batch losses "
                     "are scaled wrongly. Each micro-batch's share of the batch mean is n_i / N (its real target "
                     "tokens over the whole batch's).")
        else:
            cause = (f"the update points elsewhere (cosine {direction:.5f} with the reference, length {scale:.3f}x). "
                     "Every micro-batch must contribute once, with its share: optimizer.zero_grad() once BEFORE "
                     "the loop (inside it, it throws away what was accumulated), optimizer.step() once AFTER it "
                     "(inside it, that is k small steps, not one), and no sequence left out.")
    raise AssertionError(f"{what}: the update differs from the plain step on the whole batch by {error:.2e} "
                         f"(relative; allowed {TOLERANCE:g}).{extra}\nLikely cause: {cause}")


def _describe(B, micro_batch_size, lengths, max_norm=None):
    clip = "" if max_norm is None else f", max_norm={max_norm:.4g}"
    return (f"accumulated_step with SGD(lr=1) on a batch of {B} sequences ({lengths}), "
            f"micro_batch_size={micro_batch_size}{clip}")


def test_accumulation_equals_full_batch(submission, device, lab, helpers):
    """Sequences without padding, micro-batch sizes that do and do not divide the batch."""
    passed = []
    for B, micro_batch_size, seed in ((24, 8, 11), (20, 8, 12)):
        state = lab.initial_state(seed, device)
        tokens, targets = lab.acclab.make_batch(B, seed=seed, device=device, lengths=T)
        expected = lab.reference_update(state, tokens, targets, device)["update"]
        got = lab.student_step(submission, device, state, tokens, targets, micro_batch_size)["update"]
        extra = ""
        if passed:
            extra = (f" It was right for a batch of {passed[0][0]} in micro-batches of {passed[0][1]}, which divide "
                     f"it evenly; here the last micro-batch holds {B % micro_batch_size} sequences.")
        _assert_update(lab, helpers, got, expected,
                       _describe(B, micro_batch_size, f"all {T} tokens long, no padding", None),
                       _mistakes(lab, state, tokens, targets, device, micro_batch_size), extra)
        passed.append((B, micro_batch_size))


def test_accumulation_weights_tokens(submission, device, lab, helpers):
    """Sequences of very different lengths: each micro-batch weighs by its real target tokens."""
    # The uneven split first: with equal micro-batches, weighting by sequences and dividing by k coincide.
    for B, micro_batch_size, seed in ((21, 8, 22), (24, 8, 21)):
        lengths = _lengths_short_then_long(B)
        state = lab.initial_state(seed, device)
        tokens, targets = lab.acclab.make_batch(B, seed=seed, device=device, lengths=lengths)
        expected = lab.reference_update(state, tokens, targets, device)["update"]
        got = lab.student_step(submission, device, state, tokens, targets, micro_batch_size)["update"]
        per_micro = [sum(lengths[s]) for s in _micro_slices(B, micro_batch_size)]
        _assert_update(lab, helpers, got, expected,
                       _describe(B, micro_batch_size, f"real target tokens per micro-batch {per_micro}", None),
                       _mistakes(lab, state, tokens, targets, device, micro_batch_size))


def test_step_stays_in_micro_batches(submission, device, lab):
    """No forward call sees more than micro_batch_size sequences (the point of accumulating)."""
    B, micro_batch_size, seed = 24, 6, 41
    state = lab.initial_state(seed, device)
    tokens, targets = lab.acclab.make_batch(B, seed=seed, device=device)
    seen = lab.student_step(submission, device, state, tokens, targets, micro_batch_size)["seen"]
    what = f"accumulated_step on a batch of {B} with micro_batch_size={micro_batch_size}"
    assert seen, (f"{what}: expected forward calls of at most {micro_batch_size} sequences, got no forward call "
                  "of the model at all. Likely cause: the step does not run model(micro_tokens).")
    assert max(seen) <= micro_batch_size, (
        f"{what}: expected every forward call to see at most {micro_batch_size} sequences, got forward calls of "
        f"{seen} sequences. Likely cause: the whole batch went through the model at once (to compute the loss, or "
        "instead of the micro-batches); that needs the activation memory accumulation exists to avoid. Split with "
        "tokens.split(micro_batch_size) and run only the micro-batches.")
    assert sum(seen) >= B, (
        f"{what}: expected the {B} sequences to go through the model, got forward calls of {seen} sequences "
        f"({sum(seen)} in all). Likely cause: some micro-batches were skipped.")


def _clip_setup(lab, device):
    B, micro_batch_size, seed = 24, 8, 31
    lengths = _lengths_short_then_long(B)
    state = lab.initial_state(seed, device)
    tokens, targets = lab.acclab.make_batch(B, seed=seed, device=device, lengths=lengths)
    plain = lab.reference_update(state, tokens, targets, device)
    max_norm = 0.3 * plain["norm"]  # well below the gradient's norm: clipping is active
    return B, micro_batch_size, lengths, state, tokens, targets, plain, max_norm


def _clip_note(submission, device):
    """A pointer to clip_grad_norm when it does not clip a simple case right, else ''."""
    import torch

    acclab = submission.module("acclab")
    grads = [torch.full((3,), 2.0, dtype=torch.float64, device=device), torch.full((4,), 1.5, dtype=torch.float64,
                                                                                    device=device)]
    try:
        bag = acclab.make_parameters([torch.zeros_like(g) for g in grads], grads)
        submission.clip_grad_norm(bag.parameters(), 1.0)
        after = torch.cat(bag.grads())
        works = torch.allclose(after, torch.cat(grads) / 21 ** 0.5, rtol=1e-5)
    except (SubmissionError, TypeError):
        works = False
    if works:
        return ""
    return ("\nNote: your clip_grad_norm does not clip a simple case right yet (see its checks). If the step uses it, "
            "fix it first: this failure may be its fault.")


def test_clip_after_accumulation(submission, device, lab, helpers):
    """With max_norm active, the update equals: accumulate the whole batch, clip once (torch), step."""
    B, micro_batch_size, lengths, state, tokens, targets, plain, max_norm = _clip_setup(lab, device)
    what = _describe(B, micro_batch_size, "sequences of 2 to 16 real tokens", max_norm)

    unclipped = lab.student_step(submission, device, state, tokens, targets, micro_batch_size)["update"]
    if helpers.relative_error(unclipped, plain["update"]) > TOLERANCE:
        raise AssertionError(f"{what}: the step is already off WITHOUT clipping (max_norm=None), so clipping cannot "
                             "be judged yet. Fix the accumulation first (see the accumulation checks).")

    expected = lab.reference_update(state, tokens, targets, device, max_norm=max_norm)["update"]
    got = lab.student_step(submission, device, state, tokens, targets, micro_batch_size, max_norm=max_norm)["update"]
    error = helpers.relative_error(got, expected)
    if error <= CLIP_TOLERANCE:
        return
    if helpers.relative_error(got, plain["update"]) <= TOLERANCE:
        cause = ("the update is the UNCLIPPED one: clipping did not reach the step. Clip after the last micro-batch's "
                 "backward and BEFORE optimizer.step(); clipping after the step changes a gradient nobody reads.")
    elif helpers.cosine(got, expected) > 0.99999:
        cause = (f"the direction is right but the length is {float(got.norm() / expected.norm()):.4f}x: the clipping "
                 "factor must come from the global norm of the whole batch's accumulated gradient.")
    else:
        cause = (f"the update points elsewhere than the clipped whole-batch gradient (cosine "
                 f"{helpers.cosine(got, expected):.5f}). Clipping inside the micro-batch loop (each micro-batch's "
                 "gradient, or the running sum) weighs micro-batches unequally. Clip ONCE, after the loop, before "
                 "optimizer.step().")
    raise AssertionError(f"{what}: the update differs from accumulate-then-clip-once by {error:.2e} (relative; "
                         f"allowed {CLIP_TOLERANCE:g}).\nLikely cause: {cause}{_clip_note(submission, device)}")


def test_step_reports_loss_and_norm(submission, device, lab, helpers):
    """accumulated_step returns (the whole batch's mean token loss, the global norm before clipping)."""
    B, micro_batch_size, lengths, state, tokens, targets, plain, max_norm = _clip_setup(lab, device)
    for clip in (None, max_norm):
        what = _describe(B, micro_batch_size, "sequences of 2 to 16 real tokens", clip)
        result = lab.student_step(submission, device, state, tokens, targets, micro_batch_size, max_norm=clip)["result"]
        if not isinstance(result, (tuple, list)) or len(result) != 2:
            shown = f"a {type(result).__name__}"
            if isinstance(result, (tuple, list)):
                shown += f" of length {len(result)}"
            raise AssertionError(f"{what}: expected (loss, grad_norm), a tuple of two numbers, got {shown}.")
        loss = helpers.as_number(result[0], f"{what}: the returned loss")
        norm = helpers.as_number(result[1], f"{what}: the returned grad_norm")

        if abs(loss - plain["loss"]) > 1e-7 * abs(plain["loss"]):
            micro_means = [lab.gradient(state, tokens[s], targets[s], device)["loss"]
                           for s in _micro_slices(B, micro_batch_size)]
            if abs(loss - sum(micro_means) / len(micro_means)) <= 1e-7 * abs(loss):
                cause = ("that is the average of the micro-batch means, which weighs every micro-batch equally. The "
                         "batch's loss is the sum of all token losses over N, the batch's real target tokens.")
            elif abs(loss - micro_means[-1]) <= 1e-7 * abs(loss):
                cause = ("that is the last micro-batch's loss only. Add up every micro-batch's token losses, then "
                         "divide by N.")
            else:
                cause = "return the mean over all real target tokens of the batch: sum of the token losses / N."
            raise AssertionError(f"{what}: expected the returned loss {plain['loss']:.10g} (the whole batch's mean "
                                 f"token loss, before the step), got {loss:.10g}.\nLikely cause: {cause}")

        if abs(norm - plain["norm"]) > 1e-6 * plain["norm"]:
            if clip is not None and abs(norm - clip) <= 1e-4 * clip:
                cause = ("that is the norm AFTER clipping (max_norm). Return the norm before clipping, as "
                         "clip_grad_norm returns it: it is the number that shows a spike in the logs.")
            else:
                cause = ("return the global 2-norm of the whole batch's accumulated gradient (total_grad_norm or the "
                         "value clip_grad_norm returns), not one micro-batch's.")
            raise AssertionError(f"{what}: expected the returned grad_norm {plain['norm']:.10g} (the global norm of "
                                 f"the batch's gradient before clipping), got {norm:.10g}.\nLikely cause: {cause}")
