"""Checks of the student's ring_all_reduce: the sum, the bytes each rank sends, and who it sends them to.

All three read the same run (the `ring_runs` fixture): 2, 3 and 4 ranks, four inputs each. With
2 ranks a ring and the naive all-reduce send the same bytes to the same peer; 3 and 4 ranks are
what tell them apart.
"""

from __future__ import annotations

import torch

from grader.testing import assert_tensor_close, tolerances

SUM_HINT = (
    "compare with the table of section 3 for N = 3. If each rank holds the right sum in about 1/N of "
    "the tensor only, the all-gather phase is missing or overwrites the wrong chunk; if nothing matches, "
    "the chunk a rank adds into is not the one its left neighbour sent (an index off by one between "
    "send_index and recv_index)."
)


def _elementwise_close(got: torch.Tensor, expected: torch.Tensor) -> torch.Tensor:
    rtol, atol = tolerances(expected.dtype)
    return torch.isclose(got, expected, rtol=rtol, atol=atol) if expected.is_floating_point() else got == expected


def _close(got: torch.Tensor, expected: torch.Tensor) -> bool:
    return got.dtype == expected.dtype and bool(_elementwise_close(got, expected).all())


def _elements_right(got: torch.Tensor, expected: torch.Tensor) -> str:
    if got.shape != expected.shape or got.dtype != expected.dtype:
        return ""
    return f" ({int(_elementwise_close(got, expected).sum())} of {expected.numel()} elements right)"


def test_ring_all_reduce_sums(ring_runs):
    for world_size, cases in ring_runs.items():
        for what, inputs, runs in cases:
            expected = torch.stack(inputs).sum(dim=0)  # what dist.all_reduce(SUM) leaves on every rank
            for rank, run in enumerate(runs):
                got = run["tensor"]
                where = f"ring_all_reduce on {world_size} ranks, {what}: rank {rank}'s tensor afterwards"
                returned = run["returned"]
                returned_right = (isinstance(returned, torch.Tensor) and returned.shape == expected.shape
                                  and _close(returned.to(expected.dtype), expected))
                if returned_right and not (got.shape == expected.shape and _close(got, expected)):
                    raise AssertionError(
                        f"{where}: expected the sum over the ranks in the tensor itself, got "
                        f"{'the input unchanged' if torch.equal(got, inputs[rank]) else 'wrong values'}, while the "
                        "tensor returned is right. Likely cause: the sum was built in new tensors (chunk = chunk + "
                        "incoming, torch.cat, .clone()) and never written back. all_reduce works in place: take chunk "
                        "views of tensor.view(-1) and add_ / copy_ into them."
                    )
                if torch.equal(got, inputs[rank]):
                    raise AssertionError(
                        f"{where}: expected the sum over the ranks, got the input unchanged. Likely cause: the sum is "
                        "computed in other tensors and never written into the one passed in (all_reduce works in "
                        "place), or nothing was received."
                    )
                assert_tensor_close(got, expected, what=where + _elements_right(got, expected), hint=SUM_HINT)
            for rank, run in enumerate(runs[1:], start=1):
                assert torch.equal(run["tensor"], runs[0]["tensor"]), (
                    f"ring_all_reduce on {world_size} ranks, {what}: expected every rank to end with the same bits, "
                    f"got ranks 0 and {rank} differing in {int((run['tensor'] != runs[0]['tensor']).sum())} element(s), "
                    "each by a rounding error. Likely cause: every rank adds up the contributions itself, in its own "
                    "order, and floating-point addition is not associative. In a ring each chunk is summed once, by "
                    "one rank, and then copied to the others: replicas that start equal stay equal."
                )


def _sent_bytes(run: dict) -> int:
    return sum(nbytes for _, nbytes in run["sent"])


def test_ring_traffic_per_rank(ring_runs):
    for world_size, cases in ring_runs.items():
        for what, inputs, runs in cases:
            numel, element_size = inputs[0].numel(), inputs[0].element_size()
            buffer_bytes = numel * element_size
            steps = 2 * (world_size - 1)
            low = steps * (numel // world_size) * element_size  # one chunk per step; chunks differ by one element
            high = steps * -(-numel // world_size) * element_size
            ideal = steps * buffer_bytes / world_size
            for rank, run in enumerate(runs):
                sent = _sent_bytes(run)
                if low <= sent <= high:
                    continue
                where = (f"ring_all_reduce on {world_size} ranks, {what} ({buffer_bytes} bytes): rank {rank} sent "
                         f"{sent} bytes through point-to-point messages")
                expectation = (f"expected 2(N-1)/N of the buffer = {ideal:g} bytes (between {low} and {high} when "
                               "the chunks differ in size by one element)")
                if sent == 0:
                    cause = ("no point-to-point message was counted, so the sum came from somewhere else: "
                             "dist.all_reduce (or another collective) inside ring_all_reduce. Build it from dist.isend / "
                             "dist.irecv / dist.send / dist.recv.")
                elif sent >= (world_size - 1) * buffer_bytes and world_size > 2:
                    cause = (f"that is {sent / buffer_bytes:.2g} times the buffer: whole buffers instead of one 1/N "
                             "chunk per step, as when every rank sends everything to every other rank (N-1 buffers "
                             "per rank, growing with N) or to one root that sends the sum back.")
                elif sent > high:
                    cause = ("more than a ring needs: does each step send one chunk, and is each phase N-1 steps "
                             "(not N)? A chunk that is the whole tensor, or a step sending several chunks, costs extra.")
                else:
                    cause = ("less than a ring needs: each of the 2(N-1) steps must send one chunk; is a phase "
                             "missing or cut short?")
                raise AssertionError(f"{where}; {expectation}. Likely cause: {cause}")


def test_ring_neighbours_only(ring_runs):
    for world_size, cases in ring_runs.items():
        for what, _, runs in cases:
            offsets = set()
            for rank, run in enumerate(runs):
                destinations = sorted({dst for dst, _ in run["sent"]})
                where = f"ring_all_reduce on {world_size} ranks, {what}: rank {rank} sent to rank(s) {destinations}"
                assert destinations, (
                    f"{where}: expected messages to one neighbour, got none. Likely cause: the sum came from a "
                    "collective (dist.all_reduce) instead of point-to-point messages around a ring."
                )
                assert len(destinations) == 1, (
                    f"{where}: expected every message to go to one neighbour ((rank + 1) % N, or (rank - 1) % N). "
                    "In a ring each rank talks to its right neighbour only, so every link carries the same load "
                    "at the same time; sending to several ranks means an all-to-all or a root, whose links "
                    "are loaded unevenly."
                )
                offset = (destinations[0] - rank) % world_size
                assert offset in (1, world_size - 1), (
                    f"{where}: expected the neighbour (rank + 1) % N = {(rank + 1) % world_size} (or (rank - 1) % N = "
                    f"{(rank - 1) % world_size}), got a rank {offset} places further round. Likely cause: a wrong "
                    "modulo in the neighbour's rank."
                )
                offsets.add(offset)
            assert len(offsets) == 1, (
                f"ring_all_reduce on {world_size} ranks, {what}: expected every rank to send the same way round the "
                f"ring, got some sending right and some left. Likely cause: the direction depends on the rank "
                "(for instance on its parity), so the messages no longer form one ring."
            )
