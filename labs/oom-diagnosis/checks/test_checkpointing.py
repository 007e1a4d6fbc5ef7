"""Check of checkpointed_forward: the same logits and gradients as model(x), with far less kept for backward.

Values are compared here against the lab's model run in this process. The memory kept after the
forward is measured by the lab's tracker in the submission process (that is where the tensors
live); a submission could fake that number, but it gains only this check's memory half, and the
fixed step's checks do not rely on it.
"""

import torch

from grader.testing import assert_tensor_close, expect_tensor

BATCH = 1024
MAX_KEPT_FRACTION = 0.4  # checkpointed blocks keep ~15% of a plain forward here; keeping everything is 100%


def test_checkpointed_forward_saves_memory(submission, device, oom):
    """Same logits and gradients as the plain forward; at most 40% of its activations kept after the forward."""
    reference = oom.lab.make_model(seed=13).to(device)
    state = oom.lab.state_of(reference)
    x, y = oom.lab.make_batch(batch_size=BATCH, seed=13, device=device)
    model = oom.remote_model(submission, device, state=state)

    report = submission.module("memtrack").measure(submission.checkpointed_forward, model, x, track=[model, x])
    logits = expect_tensor(report["result"], shape=(BATCH, oom.lab.CONFIG.classes),
                           what="checkpointed_forward(model, x)", hint="return the head's logits, as model(x) does.")
    tolerance = {"rtol": 2e-2, "atol": 2e-2} if report["low_precision"] else {}  # bf16 inside: bf16 tolerance
    expected = reference(x)
    assert_tensor_close(logits.float(), expected.detach(), what="checkpointed_forward(model, x) logits",
                        hint="run embed, then every block in order (each under checkpoint), then head.", **tolerance)

    theirs = submission.module("oomlab").loss_and_grads(submission.checkpointed_forward, model, x, y)
    oom.lab.loss_fn(expected, y).backward()
    for name, parameter in reference.named_parameters():
        grad = theirs["grads"].get(name)
        if grad is None:
            raise AssertionError(f"after backward through checkpointed_forward, {name} has no gradient; expected one "
                                 "for every parameter. Likely cause: a block ran under torch.no_grad(), or its "
                                 "output was detached, so backward never reached it.")
        assert_tensor_close(grad.float(), parameter.grad, what=f"gradient of {name} through checkpointed_forward",
                            hint="checkpoint(block, h, use_reentrant=False) recomputes the same block in backward; "
                                 "the gradients must equal the plain forward's.", **tolerance)

    with oom.memtrack.MemoryTracker(track=[reference, x]) as plain:
        kept_alive = reference(x)
    plain_kept = plain.end_bytes - plain.baseline_bytes
    kept = report["end_bytes"] - report["baseline_bytes"]
    del kept_alive
    if kept > MAX_KEPT_FRACTION * plain_kept:
        raise AssertionError(
            f"after the forward on a batch of {BATCH}, checkpointed_forward keeps {oom.fmt(kept)} alive for backward, "
            f"{kept / plain_kept:.0%} of what model(x) keeps ({oom.fmt(plain_kept)}); expected at most "
            f"{MAX_KEPT_FRACTION:.0%}. Likely cause: nothing is actually checkpointed. Each block must run as "
            "checkpoint(block, h, use_reentrant=False) so only its input h is saved; calling block(h) directly, "
            "or checkpointing a function that does nothing, keeps every activation inside the blocks.")
    assert torch.isfinite(logits).all(), "checkpointed_forward returned NaN or infinite logits; expected finite values."
