"""Unit tests of the oom-diagnosis lab's trusted helpers: the memory tracker and the training setup."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from grader.testing import trusted_public_module

PUBLIC = Path(__file__).resolve().parents[2] / "labs" / "oom-diagnosis" / "public"


def _load(name: str):
    """The lab's public/ module, loaded the way its checks load it (no clash with other labs)."""
    return trusted_public_module(PUBLIC.parent, name)


memtrack = _load("memtrack")
oomlab = _load("oomlab")
MemoryTracker = memtrack.MemoryTracker

FLOAT = 4  # bytes per float32
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.fixture(autouse=True)
def _one_thread():
    """Byte counts do not depend on threads; on a busy 2-core machine OpenMP's spinning threads make
    these small matmuls up to 10x slower, so this file runs single-threaded."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _saved_activation_bytes(model, x, y) -> int:
    """Bytes autograd saves for backward in forward + loss, parameters excluded (the lab's definition)."""
    params = {id(p.untyped_storage()) for p in model.parameters()}
    saved: dict[int, int] = {}

    def pack(t):
        storage = t.untyped_storage()
        if id(storage) not in params:
            saved[id(storage)] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = oomlab.loss_fn(model(x), y)
    del loss
    return sum(saved.values())


# -- the tracker: counting ------------------------------------------------------------------------
def test_peak_and_end_of_known_allocations():
    with MemoryTracker() as mem:
        a = torch.empty(1000)
        b = torch.empty(500)
        assert mem.live_bytes == 1500 * FLOAT
        del a
        assert mem.live_bytes == 500 * FLOAT, "a freed tensor must leave the live count at once"
        c = torch.ones(100)
    assert mem.peak_bytes == 1500 * FLOAT
    assert mem.end_bytes == 600 * FLOAT
    assert mem.baseline_bytes == 0
    del b, c


def test_views_share_their_base_storage():
    with MemoryTracker() as mem:
        a = torch.zeros(1000)
        views = [a.view(10, 100), a[::2], a.t(), a.unsqueeze(0).expand(3, 1000), a.detach()]
        reshaped = a.view(10, 100).reshape(100, 10)  # contiguous: still a view
    assert mem.peak_bytes == 1000 * FLOAT, f"views were counted again: peak {mem.peak_bytes}"
    del a, views, reshaped


def test_copies_are_counted_and_in_place_ops_are_not():
    with MemoryTracker() as mem:
        a = torch.zeros(1000)
        a.add_(1).mul_(2)
        b = a.clone()
        c = a.to(torch.float64)
    assert mem.peak_bytes == 1000 * FLOAT * 2 + 1000 * 8
    del a, b, c


def test_dtypes_count_their_own_width():
    with MemoryTracker() as mem:
        a = torch.zeros(1000, dtype=torch.bfloat16)
        b = torch.zeros(1000, dtype=torch.int64)
    assert mem.peak_bytes == 1000 * 2 + 1000 * 8
    assert mem.low_precision, "a bfloat16 tensor appeared, low_precision must say so"
    del a, b


def test_low_precision_is_false_for_fp32_work():
    with MemoryTracker() as mem:
        torch.randn(10, 10) @ torch.randn(10, 10)
    assert not mem.low_precision


def test_tracked_tensors_form_the_baseline_once_each():
    weight = torch.zeros(1000)
    with MemoryTracker(track=[weight, weight, {"again": weight}]) as mem:
        extra = weight + 1
    assert mem.baseline_bytes == 1000 * FLOAT, "the same tensor tracked three times must count once"
    assert mem.peak_bytes == 2000 * FLOAT
    assert mem.end_bytes == 2000 * FLOAT
    del extra


def test_tracked_module_counts_parameters_buffers_and_grads():
    model = torch.nn.Sequential(torch.nn.Linear(10, 20), torch.nn.BatchNorm1d(20))
    params = sum(p.numel() for p in model.parameters())
    buffers = sum(b.numel() * b.element_size() for b in model.buffers())
    with MemoryTracker(track=model) as mem:
        pass
    assert mem.baseline_bytes == params * FLOAT + buffers
    model(torch.randn(4, 10)).sum().backward()
    with MemoryTracker(track=model) as mem:
        pass
    assert mem.baseline_bytes == 2 * params * FLOAT + buffers


def test_tracked_optimizer_counts_its_state():
    model = torch.nn.Linear(10, 10)
    optimizer = torch.optim.Adam(model.parameters())
    model(torch.randn(2, 10)).sum().backward()
    optimizer.step()
    params = sum(p.numel() for p in model.parameters())
    with MemoryTracker(track=optimizer) as mem:
        pass
    # exp_avg and exp_avg_sq per parameter, plus one float32 `step` scalar per parameter tensor
    assert mem.baseline_bytes == 2 * params * FLOAT + 2 * FLOAT


def test_freed_tracked_tensors_leave_the_count():
    model = torch.nn.Linear(100, 100)
    model(torch.randn(2, 100)).sum().backward()
    with MemoryTracker(track=model) as mem:
        model.zero_grad(set_to_none=True)
        after = mem.live_bytes
    params = sum(p.numel() for p in model.parameters()) * FLOAT
    assert mem.baseline_bytes == 2 * params
    assert after == params, "set_to_none frees the gradients; the tracker must see that"


def test_untracked_tensors_from_before_are_not_counted():
    before = torch.zeros(1000)
    with MemoryTracker() as mem:
        before.add_(1)
        view = before[:10]
    assert mem.peak_bytes == 0
    del view


def test_track_rejects_what_it_cannot_count():
    with pytest.raises(TypeError, match="track= takes"):
        MemoryTracker(track=[object()]).__enter__()


def test_format_bytes_reads_like_cuda():
    assert memtrack.format_bytes(512) == "512 bytes"
    assert memtrack.format_bytes(3 * 2**20) == "3.00 MiB"
    assert memtrack.format_bytes(1.5 * 2**30) == "1.50 GiB"
    assert memtrack.format_bytes(2048) == "2.00 KiB"


# -- the tracker: the budget ----------------------------------------------------------------------
def test_budget_raises_an_oom_shaped_like_cuda():
    keep = []
    with pytest.raises(torch.OutOfMemoryError) as info:
        with MemoryTracker(budget_bytes=10_000) as mem:
            keep.append(torch.empty(2000))  # 8000 bytes: fits
            keep.append(torch.empty(1000))  # 4000 more: over
    error = info.value
    assert isinstance(error, memtrack.OutOfMemoryError)
    assert error.tried_bytes == 4000
    assert error.budget_bytes == 10_000
    message = str(error)
    assert message.startswith("CUDA out of memory")
    assert "Tried to allocate 3.91 KiB" in message
    assert "9.77 KiB" in message and "7.81 KiB is allocated" in message
    assert "aten.empty" in message
    assert len(keep) == 1
    assert mem.peak_bytes == 8000, "the failed allocation must not count in the peak"


def test_exactly_at_budget_is_fine():
    with MemoryTracker(budget_bytes=8000) as mem:
        a = torch.empty(2000)
    assert mem.peak_bytes == 8000
    del a


def test_tracker_is_gone_after_an_oom():
    with pytest.raises(torch.OutOfMemoryError):
        with MemoryTracker(budget_bytes=100):
            torch.empty(1000)
    big = torch.empty(10_000)  # no tracker left behind on the mode stack to raise again
    assert big.numel() == 10_000


def test_memory_of_a_failed_step_is_released():
    with pytest.raises(torch.OutOfMemoryError):
        with MemoryTracker(budget_bytes=10_000):
            torch.empty(4000)
    with MemoryTracker() as mem:
        pass
    assert mem.peak_bytes == 0


# -- the tracker: autograd --------------------------------------------------------------------------
def test_forward_keeps_exactly_the_saved_activations():
    model = oomlab.make_model(depth=2)
    x, y = oomlab.make_batch(batch_size=256)
    expected = _saved_activation_bytes(model, x, y)
    with MemoryTracker(track=[model, x, y]) as mem:
        loss = oomlab.loss_fn(model(x), y)
        kept = mem.live_bytes - mem.baseline_bytes
    # beyond the saved tensors only the loss is alive: the logits are not saved (log_softmax keeps its output)
    saved_inputs = x.numel() * FLOAT + y.numel() * 8  # the batch is saved, but it was tracked already
    assert kept == expected - saved_inputs + FLOAT
    del loss


def test_backward_frees_activations_and_creates_gradients():
    model = oomlab.make_model(depth=2)
    x, y = oomlab.make_batch(batch_size=256)
    params = sum(p.numel() for p in model.parameters()) * FLOAT
    with MemoryTracker(track=[model, x, y]) as mem:
        oomlab.loss_fn(model(x), y).backward()
    assert mem.end_bytes == mem.baseline_bytes + params, "after backward only the gradients should remain"
    assert mem.peak_bytes > mem.end_bytes + 100_000, "the activations were alive during backward"


def test_checkpointing_is_seen_to_keep_less():
    model = oomlab.make_model(depth=4)
    x, _ = oomlab.make_batch(batch_size=512)

    def checkpointed(model, x):
        h = model.embed(x)
        for block in model.blocks:
            h = checkpoint(block, h, use_reentrant=False)
        return model.head(h)

    kept = {}
    for name, forward in (("plain", lambda m, x: m(x)), ("checkpointed", checkpointed)):
        with MemoryTracker(track=[model, x]) as mem:
            out = forward(model, x)
        kept[name] = mem.end_bytes - mem.baseline_bytes
        out.sum().backward()  # the recomputation in backward runs fine after the tracker left
        model.zero_grad(set_to_none=True)
    assert kept["checkpointed"] < 0.3 * kept["plain"], kept


def test_measure_returns_the_result_and_the_numbers():
    def allocate(n):
        return torch.zeros(n)

    report = memtrack.measure(allocate, 250, budget_bytes=2000)
    assert report["peak_bytes"] == 1000
    assert report["end_bytes"] == 1000
    assert report["budget_bytes"] == 2000
    assert report["device"] == "cpu"
    assert torch.equal(report["result"], torch.zeros(250))
    with pytest.raises(torch.OutOfMemoryError):
        memtrack.measure(allocate, 1000, budget_bytes=2000)


@needs_cuda
def test_cuda_path_reads_the_allocator():
    device = torch.device("cuda")
    weight = torch.zeros(1 << 20, device=device)
    with MemoryTracker(track=weight) as mem:
        a = torch.empty(1 << 20, device=device)
        del a
        b = torch.empty(1 << 18, device=device)
    assert mem.on_cuda
    assert mem.baseline_bytes == 4 << 20
    assert mem.peak_bytes == 8 << 20
    assert mem.end_bytes == (4 << 20) + (1 << 20)
    del b


@needs_cuda
def test_cuda_path_raises_at_the_end_of_an_over_budget_block():
    device = torch.device("cuda")
    with pytest.raises(torch.OutOfMemoryError, match="CUDA out of memory") as info:
        with MemoryTracker(budget_bytes=1 << 20, device=device):
            a = torch.empty(1 << 20, device=device)
            del a
    assert info.value.live_bytes == 4 << 20
    assert "peaked at 4.00 MiB, 3.00 MiB over the budget of 1.00 MiB" in str(info.value)


# -- the training setup -----------------------------------------------------------------------------
def test_batches_are_reproducible_and_labelled():
    x1, y1 = oomlab.make_batch(batch_size=64, seed=5)
    x2, y2 = oomlab.make_batch(batch_size=64, seed=5)
    x3, _ = oomlab.make_batch(batch_size=64, seed=6)
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert not torch.equal(x1, x3)
    assert x1.shape == (64, oomlab.CONFIG.in_features) and y1.dtype == torch.int64
    assert len(set(y1.tolist())) > 3, "labels should use several classes"


def test_make_model_applies_changes_and_seed():
    model = oomlab.make_model(width=32, depth=2)
    assert len(model.blocks) == 2 and model.embed.out_features == 32
    assert torch.equal(oomlab.make_model(seed=3).head.weight, oomlab.make_model(seed=3).head.weight)


def test_state_round_trip():
    source, target = oomlab.make_model(seed=1), oomlab.make_model(seed=2)
    oomlab.load_state(target, oomlab.state_of(source))
    for (name, a), b in zip(source.named_parameters(), target.parameters(), strict=True):
        assert torch.equal(a, b), name


def test_make_optimizer_state_sizes():
    for name, copies in (("adam", 2), ("sgd_momentum", 1), ("sgd", 0)):
        model = oomlab.make_model(depth=1)
        optimizer = oomlab.make_optimizer(model, name)
        oomlab.reference_train_step(model, optimizer, *oomlab.make_batch(batch_size=8))
        state = sum(t.numel() for s in optimizer.state.values() for t in s.values()
                    if isinstance(t, torch.Tensor) and t.dim() > 0)
        assert state == copies * sum(p.numel() for p in model.parameters()), name
    with pytest.raises(ValueError, match="unknown optimizer"):
        oomlab.make_optimizer(model, "lion")


def test_loss_and_grads_matches_autograd():
    model = oomlab.make_model(depth=1)
    x, y = oomlab.make_batch(batch_size=16)
    result = oomlab.loss_and_grads(lambda m, x: m(x), model, x, y)
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    assert result["loss"] == pytest.approx(loss.item())
    for name, p in model.named_parameters():
        assert torch.allclose(result["grads"][name], p.grad), name


# -- the lab's premise: the plain step fails, activations dominate, the intended fix fits ----------
def _warm(step, model, optimizer, x, y):
    step(model, optimizer, *oomlab.make_batch(batch_size=x.shape[0], seed=99))  # Adam state exists


def test_plain_step_runs_out_of_memory_at_the_failing_batch():
    model = oomlab.make_model()
    optimizer = oomlab.make_optimizer(model)
    x, y = oomlab.make_batch()
    _warm(oomlab.reference_train_step, model, optimizer, x, y)
    with pytest.raises(torch.OutOfMemoryError):
        with MemoryTracker(budget_bytes=oomlab.CONFIG.budget_bytes, track=[model, optimizer, x, y]):
            oomlab.reference_train_step(model, optimizer, x, y)
    with MemoryTracker(track=[model, optimizer, x, y]) as mem:
        oomlab.reference_train_step(model, optimizer, x, y)
    assert mem.peak_bytes > 3 * oomlab.CONFIG.budget_bytes, "the failing step should be far over budget"


def test_activations_dominate_at_the_failing_batch():
    model = oomlab.make_model()
    x, y = oomlab.make_batch()
    weights = sum(p.numel() for p in model.parameters()) * FLOAT
    activations = _saved_activation_bytes(model, x, y)
    persistent = weights * (1 + 1 + 2)  # weights, gradients, Adam's two moments
    assert activations > 5 * persistent, (activations, persistent)
    assert persistent < oomlab.CONFIG.budget_bytes / 2, "the fix must have room for activations"


def test_checkpointing_plus_accumulation_fits_but_neither_alone_does():
    def step(model, optimizer, x, y, micro_batch, use_checkpoint):
        optimizer.zero_grad(set_to_none=True)
        for xs, ys in zip(x.split(micro_batch), y.split(micro_batch), strict=True):
            h = model.embed(xs)
            for block in model.blocks:
                h = checkpoint(block, h, use_reentrant=False) if use_checkpoint else block(h)
            (oomlab.loss_fn(model.head(h), ys) * (len(xs) / len(x))).backward()
        optimizer.step()

    x, y = oomlab.make_batch()
    peaks = {}
    for micro_batch, use_checkpoint in ((512, True), (512, False), (2048, True)):
        model = oomlab.make_model()
        optimizer = oomlab.make_optimizer(model)
        def run(*args, micro_batch=micro_batch, use_checkpoint=use_checkpoint):
            step(*args, micro_batch=micro_batch, use_checkpoint=use_checkpoint)

        _warm(run, model, optimizer, x, y)
        with MemoryTracker(track=[model, optimizer, x, y]) as mem:
            run(model, optimizer, x, y)
        peaks[(micro_batch, use_checkpoint)] = mem.peak_bytes
    budget = oomlab.CONFIG.budget_bytes
    assert peaks[(512, True)] < 0.85 * budget, peaks  # the intended fix, with a margin
    assert peaks[(512, False)] > 1.15 * budget, peaks  # so a checkpoint that keeps everything is caught
    assert peaks[(2048, True)] > 1.15 * budget, peaks
