"""Checks of the data-parallel pieces: shards, replicas, averaged gradients, and whole training steps.

Every reference is computed here: the mean gradient, the seeded weights (trusted ddplab's
make_model after torch.manual_seed) and single-process SGD on the combined batches. The ranks
run in the submission; what they hold at the end comes back as tensors.
"""

from __future__ import annotations

import torch

from grader.testing import assert_tensor_close

SEED_HINT = (
    "the replicas did not start from the same weights. Seed with the same seed on every rank "
    "(torch.manual_seed(seed), not seed + rank) right before building the model, or broadcast rank 0's "
    "parameters; averaging gradients never pulls replicas that started apart back together."
)


def _state_of(module) -> dict:
    return {name: value.detach().clone() for name, value in module.state_dict().items()}


def _seeded_state(ddplab, seed: int) -> dict:
    torch.manual_seed(seed)
    return _state_of(ddplab.make_model())


def _same_keys(got: dict, expected: dict, where: str) -> None:
    assert isinstance(got, dict) and sorted(got) == sorted(expected), (
        f"{where}: expected the parameters {sorted(expected)} (ddplab.make_model()), got "
        f"{sorted(got) if isinstance(got, dict) else type(got).__name__}. Likely cause: a different model "
        "than ddplab.make_model(), or a wrapper around it."
    )


def test_shards_partition_batch(submission):
    for batch, world_size in ((12, 2), (12, 3), (12, 4), (8, 8)):
        # Row i of x holds i in every column and y[i] = 100 + i: any mix-up between x and y shows.
        x = torch.arange(batch, dtype=torch.float32)[:, None].repeat(1, 3)  # (batch, 3)
        y = 100 + torch.arange(batch)  # (batch,)
        seen = []
        for rank in range(world_size):
            where = f"shard_batch(x of shape {tuple(x.shape)}, y, rank={rank}, world_size={world_size})"
            got = submission.shard_batch(x, y, rank, world_size)
            assert isinstance(got, (tuple, list)) and len(got) == 2 and all(isinstance(t, torch.Tensor) for t in got), (
                f"{where}: expected a tuple (x_local, y_local) of two tensors, got {type(got).__name__}."
            )
            x_local, y_local = got
            share = batch // world_size
            assert x_local.shape == (share, 3) and y_local.shape == (share,), (
                f"{where}: expected x_local of shape {(share, 3)} and y_local of shape {(share,)} (an equal 1/N share), "
                f"got {tuple(x_local.shape)} and {tuple(y_local.shape)}. "
                + ("Likely cause: every rank takes the whole batch, as a data loader without DistributedSampler does. "
                   "Nothing fails, because every rank then computes the same full-batch gradient: you just pay N "
                   "processes for the work of one."
                   if x_local.shape[:1] == (batch,) else "Likely cause: a wrong slice size (B // N per rank).")
            )
            rows = x_local[:, 0].round().long().clamp(0, batch - 1)
            assert torch.equal(x_local, x[rows]), (
                f"{where}: expected whole rows of x, got rows that are not rows of the batch. Likely cause: "
                "slicing the wrong dimension (the batch is dimension 0)."
            )
            assert torch.equal(y_local, y[rows]), (
                f"{where}: expected y_local to hold the labels of the rows in x_local ({(y[rows]).tolist()}), got "
                f"{y_local.tolist()}. Likely cause: x and y sliced differently, so examples lose their labels."
            )
            seen.extend(rows.tolist())
        counts = torch.bincount(torch.tensor(seen), minlength=batch)
        assert bool((counts == 1).all()), (
            f"shard_batch over {world_size} ranks of a batch of {batch}: expected every example on exactly one rank, "
            f"got example(s) {torch.nonzero(counts == 0).flatten().tolist()} on no rank and "
            f"{torch.nonzero(counts > 1).flatten().tolist()} on several. Likely cause: the slice ignores the rank, or "
            "the start of rank r's slice is not r * (B // N)."
        )


def test_replicas_identical(submission, ddplab, failing_rank_says):
    remote = submission.module("ddplab")
    seeds = [0, 7]
    world_size = 3
    with submission.timeout(30), failing_rank_says(f"make_replica on {world_size} ranks"):
        states = remote.replica_trial(submission.make_replica, world_size, seeds)  # states[rank][i]
    for i, seed in enumerate(seeds):
        expected = _seeded_state(ddplab, seed)
        for rank in range(world_size):
            got = states[rank][i]
            where = f"make_replica({seed}) on rank {rank} of {world_size}"
            _same_keys(got, expected, where)
            for name in expected:
                assert torch.equal(got[name], states[0][i][name]), (
                    f"{where}: expected exactly rank 0's {name}, got different values. Likely cause: {SEED_HINT}"
                )
                assert_tensor_close(got[name], expected[name], what=f"{where}: {name}",
                                    hint="the weights are not those of torch.manual_seed(seed); ddplab.make_model(). "
                                         "Seed inside make_replica (each rank's random state before the call "
                                         "differs), with exactly `seed`.")


def test_average_gradients_mean(submission, ddplab, failing_rank_says):
    remote = submission.module("ddplab")
    shapes = {name: p.shape for name, p in ddplab.make_model().named_parameters()}
    names = list(shapes)
    for world_size in (2, 3):
        generator = torch.Generator().manual_seed(world_size)
        grads = [{name: torch.randn(shapes[name], generator=generator) for name in names} for _ in range(world_size)]
        with submission.timeout(30), failing_rank_says(f"average_gradients on {world_size} ranks"):
            ranks = remote.average_gradients_trial(submission.average_gradients, grads)
        for name in names:
            stacked = torch.stack([g[name] for g in grads])  # (N, *shape)
            expected = stacked.mean(dim=0)
            for rank, result in enumerate(ranks):
                where = f"average_gradients on {world_size} ranks: rank {rank}'s {name}.grad"
                got = result["grads"][name]
                if isinstance(got, torch.Tensor) and got.shape == expected.shape:
                    if torch.allclose(got, stacked.sum(dim=0), rtol=1e-4, atol=1e-5):
                        raise AssertionError(f"{where}: expected the mean over the ranks, got their sum ({world_size} "
                                             "times the mean). Likely cause: all_reduce sums; divide by "
                                             "dist.get_world_size() afterwards (gloo has no ReduceOp.AVG).")
                    if world_size != 2 and torch.allclose(got, stacked.sum(dim=0) / 2, rtol=1e-4, atol=1e-5):
                        raise AssertionError(f"{where}: expected the sum over {world_size} ranks divided by "
                                             f"{world_size}, got it divided by 2. Likely cause: a world size of 2 "
                                             "written into the code; use dist.get_world_size().")
                assert_tensor_close(got, expected, what=where,
                                    hint="every rank must end with the mean of the ranks' gradients: all_reduce "
                                         "(SUM) each p.grad in place, then divide by the world size once.")
                assert torch.equal(got, ranks[0]["grads"][name]), (
                    f"{where}: expected exactly rank 0's gradient, got values that differ in the last bits. Likely "
                    "cause: each rank sums in its own order; use dist.all_reduce (or your ring), which gives every "
                    "rank the same bits."
                )
            changed = ranks[0]["params_changed"]
            assert not changed, (
                f"average_gradients on {world_size} ranks: expected the parameters untouched, got {changed} changed. "
                "Likely cause: averaging the weights (p.data) instead of p.grad, or an optimizer step inside "
                "average_gradients; the step is data_parallel_step's job, after the averaging."
            )


def _update_ratio(got: dict, reference: dict, start: dict) -> float:
    """How big the replica's total update is along the reference's: 1.0 when right, ~N when summed, ~1/N when averaged twice."""
    got_update = torch.cat([(got[n] - start[n]).flatten().double() for n in start])
    ref_update = torch.cat([(reference[n] - start[n]).flatten().double() for n in start])
    return float(got_update @ ref_update / (ref_update @ ref_update))


def test_data_parallel_matches_single_process(submission, ddplab, failing_rank_says):
    remote = submission.module("ddplab")
    seed, lr, steps, batch = 5, 0.1, 3, 16
    x, y = ddplab.make_batches(steps=steps, batch_size=batch, seed=11)  # (3, 16, 8), (3, 16)
    start = _seeded_state(ddplab, seed)
    torch.manual_seed(seed)
    reference_model = ddplab.make_model()
    ddplab.train_single_process(reference_model, x, y, lr=lr)
    reference = _state_of(reference_model)

    for world_size in (2, 4):
        with submission.timeout(30), failing_rank_says(f"data_parallel_step on {world_size} ranks"):
            ranks = remote.data_parallel_trial(submission.make_replica, submission.data_parallel_step, x, y,
                                               world_size, seed, lr)
        what = (f"{steps} data_parallel_step calls on {world_size} ranks (SGD, lr={lr}, global batches of {batch}, "
                f"{batch // world_size} examples per rank)")
        for rank, result in enumerate(ranks):
            _same_keys(result["start"], reference, f"{what}: rank {rank}'s model from make_replica({seed})")
            _same_keys(result["state"], reference, f"{what}: rank {rank}'s model after training")
        for rank, result in enumerate(ranks):
            if not all(torch.equal(result["start"][n], ranks[0]["start"][n]) for n in reference):
                raise AssertionError(f"{what}: expected identical replicas, got rank {rank}'s make_replica({seed}) "
                                     f"different from rank 0's before the first step. Likely cause: {SEED_HINT}")
        for name in reference:
            assert_tensor_close(ranks[0]["start"][name], start[name], what=f"{what}: {name} from make_replica({seed})",
                                hint="the replicas start from other weights than torch.manual_seed(seed); "
                                     "ddplab.make_model() (see the make_replica check).")
        for rank, result in enumerate(ranks):
            got = result["state"]
            if not all(torch.equal(got[n], ranks[0]["state"][n]) for n in reference):
                gap = max(float((got[n] - ranks[0]["state"][n]).abs().max()) for n in reference)
                raise AssertionError(
                    f"{what}: expected the replicas to stay identical, got rank {rank} differing from rank 0 by up to "
                    f"{gap:.3g} after training, though they started equal. Likely cause: optimizer.step() ran before "
                    "the gradients were averaged (each rank stepped with its own shard's gradient), or a gradient "
                    "was left out of the averaging."
                )
        got = ranks[0]["state"]
        ratio = _update_ratio(got, reference, start)
        if world_size > 2 and abs(ratio - world_size / 2) < 0.25 * world_size / 2:
            cause = (f"each update is about {ratio:.2f} times the reference's, that is N/2 times too large: the summed "
                     "gradients were divided by 2, not by the world size. Use dist.get_world_size().")
        elif abs(ratio - world_size) < 0.25 * world_size:
            cause = (f"each update is about {ratio:.2f} times the reference's, that is N times too large: the gradients "
                     "were summed over the ranks but not divided by the world size.")
        elif abs(ratio - 1 / world_size) < 0.25 / world_size:
            cause = (f"each update is about {ratio:.2f} of the reference's, that is N times too small: the gradients "
                     "were averaged twice, for instance the loss divided by the world size and the gradients "
                     "averaged as well. Each rank's loss is the plain mean over its own shard.")
        else:
            cause = (f"the update is {ratio:.2f} times the reference's along its direction. Check the order: zero_grad, "
                     "local mean loss (ddplab.loss_fn), backward, average_gradients, optimizer.step(); and that the "
                     "replicas start from make_replica(seed).")
        for name in reference:
            assert_tensor_close(got[name], reference[name], what=f"{what}: {name} after training", hint=cause)
