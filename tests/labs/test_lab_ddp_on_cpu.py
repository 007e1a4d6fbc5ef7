"""Unit tests of the ddp-on-cpu lab's helper, ddplab.py: starting ranks, counting traffic, reporting failures.

The checks trust these pieces to say what a student's ring sent and why a rank failed, so each
behaviour is pinned here with small workers written in this file (forked ranks can run them
without pickling, which is the point of ddplab.launch).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from grader.testing import trusted_public_module

PUBLIC = Path(__file__).resolve().parents[2] / "labs" / "ddp-on-cpu" / "public"

pytestmark = pytest.mark.skipif(not (sys.platform.startswith("linux") and dist.is_gloo_available()),
                                reason="ddplab forks gloo ranks: Linux with gloo only")


def _load():
    """The lab's public/ module, loaded the way its checks load it (no clash with other labs)."""
    return trusted_public_module(PUBLIC.parent, "ddplab")


ddplab = _load()


# -- workers, run inside forked ranks ----------------------------------------------------------------
def _who_am_i(rank, world_size, tag):
    return {"rank": rank, "world_size": world_size, "dist_rank": dist.get_rank(),
            "dist_world_size": dist.get_world_size(), "tag": tag}


def _ring_of_messages(rank, world_size):
    """Three ways to send to the right: send/recv ordered by parity, isend/recv, batch_isend_irecv."""
    right, left = (rank + 1) % world_size, (rank - 1) % world_size
    small, big = torch.ones(3), torch.ones(5, dtype=torch.float64)  # 12 and 40 bytes
    incoming_small, incoming_big = torch.empty(3), torch.empty(5, dtype=torch.float64)
    if rank % 2 == 0:
        dist.send(small, dst=right)
        dist.recv(incoming_small, src=left)
    else:
        dist.recv(incoming_small, src=left)
        dist.send(small, dst=right)
    request = dist.isend(big, dst=right)
    dist.recv(incoming_big, src=left)
    request.wait()
    ops = [dist.P2POp(dist.isend, small, right), dist.P2POp(dist.irecv, incoming_small, left)]
    for request in dist.batch_isend_irecv(ops):
        request.wait()
    dist.all_reduce(big)  # a collective: not point-to-point, not counted
    return {"sent": list(ddplab.TRAFFIC.sent), "received": list(ddplab.TRAFFIC.received),
            "bytes_sent": ddplab.TRAFFIC.bytes_sent}


def _rank_one_raises(rank, world_size):
    if rank == 1:
        raise ValueError("rank one is broken")
    t = torch.zeros(1)
    dist.recv(t, src=1)  # never arrives: rank 1 raised
    return t


def _everyone_sends_first(rank, world_size):
    t = torch.ones(4)
    dist.send(t, dst=(rank + 1) % world_size)
    dist.recv(t, src=(rank - 1) % world_size)
    return t


def _rank_one_exits(rank, world_size):
    if rank == 1:
        os._exit(3)
    return rank


def _sizes_disagree(rank, world_size):
    t = torch.zeros(5 if rank == 0 else 4)
    request = dist.isend(t, dst=1 - rank)
    dist.recv(t, src=1 - rank)
    request.wait()
    return t


def _returns_numpy(rank, world_size):
    return torch.ones(2).numpy()  # not plain data for torch.load(weights_only=True)


def _library_all_reduce(tensor):
    dist.all_reduce(tensor)
    return tensor


def _reference_step(model, optimizer, x_local, y_local):
    optimizer.zero_grad()
    loss = ddplab.loss_fn(model(x_local), y_local)
    loss.backward()
    for p in model.parameters():
        dist.all_reduce(p.grad)
        p.grad /= dist.get_world_size()
    optimizer.step()
    return loss.item()


def _seeded_replica(seed):
    torch.manual_seed(seed)
    return ddplab.make_model()


# -- tests ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("world_size", [1, 2, 3])
def test_launch_returns_each_rank_result_in_rank_order(world_size):
    results = ddplab.launch(_who_am_i, world_size, "x")
    assert results == [{"rank": r, "world_size": world_size, "dist_rank": r, "dist_world_size": world_size, "tag": "x"}
                       for r in range(world_size)]


def test_traffic_counts_every_point_to_point_message_and_no_collective():
    results = ddplab.launch(_ring_of_messages, 3)
    for rank, result in enumerate(results):
        right, left = (rank + 1) % 3, (rank - 1) % 3
        assert result["sent"] == [(right, 12), (right, 40), (right, 12)]
        assert result["received"] == [(left, 12), (left, 40), (left, 12)]
        assert result["bytes_sent"] == 64


def test_a_rank_that_raises_is_named_with_its_error_and_frame():
    started = time.monotonic()
    with pytest.raises(ddplab.RankFailed) as failure:
        ddplab.launch(_rank_one_raises, 2)
    message = str(failure.value)
    assert message.startswith("rank 1 of 2 raised ValueError: rank one is broken"), message
    assert "_rank_one_raises" in message  # the worker's frame, not ddplab's plumbing
    assert "_run_rank" not in message
    assert time.monotonic() - started < 5  # the blocked rank is stopped, not waited for


def test_a_deadlock_fails_within_the_time_limit_with_the_deadlock_hint():
    started = time.monotonic()
    with pytest.raises(ddplab.RankFailed) as failure:
        ddplab.launch(_everyone_sends_first, 2, timeout_s=1.0)
    assert "deadlock" in str(failure.value)
    assert time.monotonic() - started < 8


def test_a_rank_that_exits_is_reported_with_its_exit_code():
    with pytest.raises(ddplab.RankFailed, match=r"rank 1 of 2 ended without returning a result: it exited with code 3"):
        ddplab.launch(_rank_one_exits, 2)


def test_a_size_mismatch_is_blamed_on_the_aborted_rank_not_on_its_peer():
    with pytest.raises(ddplab.RankFailed) as failure:
        ddplab.launch(_sizes_disagree, 2)
    assert "aborted (SIGABRT)" in str(failure.value)
    assert "size" in str(failure.value)


def test_a_result_that_cannot_cross_back_is_reported_as_such():
    with pytest.raises(ddplab.RankFailed, match="returned a result that cannot be read back"):
        ddplab.launch(_returns_numpy, 2)


def test_all_reduce_trial_reports_each_case_per_rank():
    inputs = [[torch.tensor([1.0, 2.0]), torch.tensor([10.0, 20.0])], [torch.tensor([3]), torch.tensor([4])]]
    runs = ddplab.all_reduce_trial(_library_all_reduce, inputs)
    assert [[run["tensor"].tolist() for run in case] for case in runs] == [[[11.0, 22.0]] * 2, [[7], [7]]]
    assert all(run["sent"] == [] for case in runs for run in case)  # a collective sends nothing point-to-point
    assert all(run["returned"] is not None for case in runs for run in case)
    assert inputs[0][0].tolist() == [1.0, 2.0]  # the caller's tensors are not modified


def test_data_parallel_trial_of_a_correct_step_equals_single_process_training():
    x, y = ddplab.make_batches(steps=3, batch_size=8, seed=4)
    torch.manual_seed(2)
    reference = ddplab.make_model()
    ddplab.train_single_process(reference, x, y, lr=0.1)
    ranks = ddplab.data_parallel_trial(_seeded_replica, _reference_step, x, y, world_size=2, seed=2, lr=0.1)
    for rank in ranks:
        for name, value in reference.state_dict().items():
            torch.testing.assert_close(rank["state"][name], value)
    with pytest.raises(ValueError, match="does not split evenly"):
        ddplab.data_parallel_trial(_seeded_replica, _reference_step, x, y, world_size=3, seed=2)


def test_replica_trial_starts_ranks_from_different_random_states():
    def unseeded(seed):
        return ddplab.make_model()  # no seeding: the weights depend on the rank's random state

    states = ddplab.replica_trial(unseeded, 2, [0])
    assert not torch.equal(states[0][0]["0.weight"], states[1][0]["0.weight"])
    seeded = ddplab.replica_trial(_seeded_replica, 2, [0])
    assert torch.equal(seeded[0][0]["0.weight"], seeded[1][0]["0.weight"])


def test_make_batches_is_deterministic_and_leaves_the_global_rng_alone():
    torch.manual_seed(0)
    before = torch.get_rng_state()
    x1, y1 = ddplab.make_batches(steps=2, batch_size=4, seed=9)
    assert torch.equal(torch.get_rng_state(), before)
    x2, y2 = ddplab.make_batches(steps=2, batch_size=4, seed=9)
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert x1.shape == (2, 4, ddplab.CONFIG.in_features) and y1.shape == (2, 4) and y1.dtype == torch.int64
