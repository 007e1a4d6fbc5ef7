"""Unit tests of the accumulate-and-clip lab's trusted helper acclab.py: model, padded batches, loss, ParameterBag.

The checks rely on three properties of it: padding never changes the logits of real tokens, the
model never mixes sequences (so a batch's gradient is exactly the sum of its micro-batches'), and
the batches are the same for the same seed on every call. These tests pin each of them down.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from grader.testing import trusted_public_module

PUBLIC = Path(__file__).resolve().parents[2] / "labs" / "accumulate-and-clip" / "public"


def _load_acclab():
    """The lab's public/ module, loaded the way its checks load it (no clash with other labs)."""
    return trusted_public_module(PUBLIC.parent, "acclab")


acclab = _load_acclab()
T = acclab.CONFIG.max_len


# -- batches ---------------------------------------------------------------------------------------
def test_batch_shapes_padding_and_next_token_targets():
    lengths = [2, 5, T, 1]
    tokens, targets = acclab.make_batch(4, seed=3, lengths=lengths)
    assert tokens.shape == targets.shape == (4, T)
    assert tokens.dtype == targets.dtype == torch.int64
    for row, length in enumerate(lengths):
        assert (tokens[row, :length] > 0).all(), "real tokens are 1 .. vocab - 1"
        assert (tokens[row, length:] == acclab.PAD_TOKEN).all()
        assert (targets[row, length:] == acclab.IGNORE_INDEX).all()
        assert (targets[row, :length] != acclab.IGNORE_INDEX).all()
        # next-token prediction: the target at t is the token at t + 1 wherever both are real
        assert torch.equal(targets[row, : length - 1], tokens[row, 1:length])
    assert int((targets != acclab.IGNORE_INDEX).sum()) == sum(lengths)


def test_batches_are_deterministic_per_seed_and_differ_across_seeds():
    a = acclab.make_batch(8, seed=5)
    b = acclab.make_batch(8, seed=5)
    c = acclab.make_batch(8, seed=6)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])


def test_random_lengths_stay_in_range_and_an_int_means_all_equal():
    _, targets = acclab.make_batch(64, seed=0)
    lengths = (targets != acclab.IGNORE_INDEX).sum(dim=1)
    assert int(lengths.min()) >= acclab.CONFIG.min_len and int(lengths.max()) <= T
    assert len(set(lengths.tolist())) > 3, "random lengths should vary"
    _, full = acclab.make_batch(5, seed=0, lengths=T)
    assert (full != acclab.IGNORE_INDEX).all()


@pytest.mark.parametrize("lengths", [[0, 3], [3, T + 1], [3]])
def test_bad_lengths_are_refused(lengths):
    with pytest.raises(ValueError, match="lengths must be"):
        acclab.make_batch(2, seed=0, lengths=lengths)


def test_sequences_follow_the_rule_mostly():
    tokens, targets = acclab.make_batch(64, seed=1, lengths=T)
    real_vocab = acclab.CONFIG.vocab - 1
    expected = (3 * (tokens - 1) + 1) % real_vocab + 1
    share = float((targets == expected).double().mean())
    assert 0.7 < share < 0.95, f"about 80% of the next tokens follow the rule (plus chance hits), got {share:.2f}"


# -- model and loss ----------------------------------------------------------------------------------
def test_same_seed_same_weights():
    a, b = acclab.make_model(seed=4), acclab.make_model(seed=4)
    for (name, p), q in zip(a.named_parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q), name


def test_padding_never_changes_the_logits_of_real_tokens():
    model = acclab.make_model(seed=0)
    tokens, _ = acclab.make_batch(6, seed=2)
    real = tokens != acclab.PAD_TOKEN
    changed = tokens.clone()
    changed[~real] = torch.randint(1, acclab.CONFIG.vocab, (int((~real).sum()),))
    with torch.no_grad():
        assert torch.allclose(model(tokens)[real], model(changed)[real], atol=1e-6)


def test_a_batch_gradient_is_the_token_weighted_sum_of_micro_batch_gradients():
    """The property the whole lab rests on: no interaction between sequences of a batch."""
    model = acclab.make_model(seed=1).double()
    tokens, targets = acclab.make_batch(10, seed=4)
    acclab.lm_loss(model(tokens), targets).backward()
    full = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    n_tokens = (targets != acclab.IGNORE_INDEX).sum()
    for t, y in zip(tokens.split(3), targets.split(3), strict=True):
        (acclab.lm_loss(model(t), y, reduction="sum") / n_tokens).backward()
    for expected, p in zip(full, model.parameters(), strict=True):
        assert torch.allclose(p.grad, expected, rtol=1e-10, atol=1e-12)


def test_loss_ignores_padding_and_mean_divides_by_real_tokens():
    logits = torch.randn(2, 3, acclab.CONFIG.vocab)
    targets = torch.tensor([[1, 2, acclab.IGNORE_INDEX], [3, acclab.IGNORE_INDEX, acclab.IGNORE_INDEX]])
    total = acclab.lm_loss(logits, targets, reduction="sum")
    by_hand = -(torch.log_softmax(logits[0, 0], -1)[1] + torch.log_softmax(logits[0, 1], -1)[2]
                + torch.log_softmax(logits[1, 0], -1)[3])
    assert torch.allclose(total, by_hand)
    assert torch.allclose(acclab.lm_loss(logits, targets), by_hand / 3)


def test_forward_records_batch_sizes():
    model = acclab.make_model()
    tokens, _ = acclab.make_batch(7, seed=0)
    model(tokens[:4])
    model(tokens[4:])
    assert model.seen_batch_sizes == [4, 3]


def test_model_trains_on_the_rule():
    """The notebook's demo run needs something learnable: a few steps must lower the loss clearly."""
    model = acclab.make_model(seed=3)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-2)
    losses = []
    for step in range(30):
        tokens, targets = acclab.make_batch(32, seed=100 + step)
        optimizer.zero_grad()
        loss = acclab.lm_loss(model(tokens), targets)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.6 * losses[0], f"loss {losses[0]:.3f} -> {losses[-1]:.3f}"


# -- ParameterBag ------------------------------------------------------------------------------------
def test_parameter_bag_holds_copies_of_values_and_gradients():
    values = [torch.randn(2, 3), torch.randn(4), torch.randn(())]
    grads = [torch.randn(2, 3), None, torch.randn(())]
    bag = acclab.make_parameters(values, grads)
    params = list(bag.parameters())
    assert len(params) == 3 and list(bag.params) == params
    for p, v, g in zip(params, values, grads, strict=True):
        assert torch.equal(p.detach(), v)
        assert (p.grad is None) if g is None else torch.equal(p.grad, g)
    original = grads[0].clone()
    bag.params[0].grad.mul_(0)
    assert torch.equal(grads[0], original), "the bag's gradients are copies: scaling them leaves the caller's alone"
    assert torch.equal(bag.grads()[0], torch.zeros(2, 3)), "grads() reads the current gradients"
    assert bag.grads()[1] is None


def test_parameter_bag_gradients_follow_the_values_dtype():
    bag = acclab.make_parameters([torch.zeros(3, dtype=torch.float64)], [torch.ones(3)])
    assert bag.grads()[0].dtype == torch.float64


def test_parameter_bag_refuses_mismatched_lists():
    with pytest.raises(ValueError, match="one gradient"):
        acclab.make_parameters([torch.zeros(2)], [])
