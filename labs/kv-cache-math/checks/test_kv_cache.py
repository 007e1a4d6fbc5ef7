"""Checks of the KVCache class alone: what update returns, and what happens past capacity."""

from __future__ import annotations

import torch

from grader.channel import SubmissionError


def random_kv(batch, n_kv_heads, n_tokens, head_dim, device):
    shape = (batch, n_kv_heads, n_tokens, head_dim)
    return torch.randn(shape, device=device), torch.randn(shape, device=device)


def expect_prefix(got, expected_k, expected_v, what, cause):
    """`got` must be (k, v) equal, bit for bit, to the expected prefix: storing is copying."""
    assert isinstance(got, (tuple, list)) and len(got) == 2, (
        f"{what}: update must return (k_all, v_all), got {type(got).__name__}"
    )
    for name, got_part, expected in (("keys", got[0], expected_k), ("values", got[1], expected_v)):
        assert isinstance(got_part, torch.Tensor), (
            f"{what}: the returned {name} should be a tensor, got {type(got_part).__name__}"
        )
        shape_cause = ("return the positions 0 .. start_pos + T - 1: not only the new ones, "
                       "not the whole buffer")
        assert tuple(got_part.shape) == tuple(expected.shape), (
            f"{what}: expected {name} of shape {tuple(expected.shape)} "
            f"(B, n_kv_heads, start_pos + T, head_dim), got {tuple(got_part.shape)}; "
            f"likely cause: {shape_cause}"
        )
        assert torch.equal(got_part.to(expected.device), expected), (
            f"{what}: the returned {name} have the right shape but not the stored values "
            f"(max difference {(got_part.to(expected.device) - expected).abs().max().item():.3g}); "
            f"likely cause: {cause}"
        )


def test_cache_update_returns_prefix(submission, device):
    """Two layers written in turns: each must keep its own positions, in order."""
    B, n_kv_heads, head_dim, max_len = 2, 2, 4, 10
    cache = submission.KVCache(3, B, n_kv_heads, head_dim, max_len,
                               dtype=torch.float32, device=device)
    k0a, v0a = random_kv(B, n_kv_heads, 4, head_dim, device)  # layer 0, positions 0..3
    k2a, v2a = random_kv(B, n_kv_heads, 4, head_dim, device)  # layer 2, positions 0..3
    k0b, v0b = random_kv(B, n_kv_heads, 2, head_dim, device)  # layer 0, positions 4..5
    k2b, v2b = random_kv(B, n_kv_heads, 1, head_dim, device)  # layer 2, position 4

    expect_prefix(cache.update(0, 0, k0a, v0a), k0a, v0a,
                  "layer 0, first update (positions 0..3)",
                  "the new keys/values must be returned as they were given")
    expect_prefix(cache.update(2, 0, k2a, v2a), k2a, v2a,
                  "layer 2, first update (positions 0..3)",
                  "each layer needs its own slot: index the buffers by `layer`")
    expect_prefix(cache.update(0, 4, k0b, v0b),
                  torch.cat([k0a, k0b], dim=2), torch.cat([v0a, v0b], dim=2),
                  "layer 0 after positions 0..3 then 4..5 (layer 2 written in between)",
                  "layers overwrite each other, or the new positions were not written at "
                  "start_pos (the sequence axis is dim 2 of (B, n_kv_heads, T, head_dim))")
    expect_prefix(cache.update(2, 4, k2b, v2b),
                  torch.cat([k2a, k2b], dim=2), torch.cat([v2a, v2b], dim=2),
                  "layer 2 after positions 0..3 then 4",
                  "layers overwrite each other, or a single length counter advanced on every "
                  "layer's update: use start_pos, it is the same for every layer of one step")


def expect_capacity_error(call, max_len, start_pos, n_tokens):
    asked = f"writing positions {start_pos}..{start_pos + n_tokens - 1} into a cache of max_len={max_len}"
    try:
        call()
    except SubmissionError as err:
        assert str(max_len) in err.message, (
            f"{asked} raised {err.type_name}: {err.message!r}; expected an error that names the "
            f"capacity ({max_len}), e.g. ValueError('KV cache full: ... max_len={max_len}'). "
            "Likely cause: no explicit capacity check, so torch failed on a shape mismatch instead"
        )
    else:
        raise AssertionError(
            f"{asked} did not raise; expected an error that names the capacity ({max_len}). "
            "Likely cause: no explicit capacity check. Torch does not raise here: a slice past "
            "the end of a buffer is empty, and a one-position write broadcasts into it, so the "
            "keys are silently dropped"
        )


def test_cache_capacity_error(submission, device):
    """Filling to exactly max_len is fine; one position more raises an error naming max_len."""
    B, n_kv_heads, head_dim, max_len = 1, 2, 4, 11  # 11: a number no shape here contains
    cache = submission.KVCache(2, B, n_kv_heads, head_dim, max_len,
                               dtype=torch.float32, device=device)
    k_a, v_a = random_kv(B, n_kv_heads, 6, head_dim, device)
    k_b, v_b = random_kv(B, n_kv_heads, 5, head_dim, device)
    cache.update(0, 0, k_a, v_a)
    try:
        got = cache.update(0, 6, k_b, v_b)
    except SubmissionError as err:
        raise AssertionError(
            f"filling a cache of max_len={max_len} exactly (positions 6..10) raised "
            f"{err.type_name}: {err.message}; likely cause: an off-by-one capacity test "
            "(start_pos + T == max_len still fits)"
        ) from None
    expect_prefix(got, torch.cat([k_a, k_b], dim=2), torch.cat([v_a, v_b], dim=2),
                  f"a cache filled to exactly max_len={max_len}", "the last positions were lost")

    one_k, one_v = random_kv(B, n_kv_heads, 1, head_dim, device)
    expect_capacity_error(lambda: cache.update(0, max_len, one_k, one_v), max_len, max_len, 1)

    # Straddling the end: positions 9..12 of 11 (no 11 among the numbers asked, so the message
    # must name the capacity). The error must come before anything is half-written.
    k_c, v_c = random_kv(B, n_kv_heads, 9, head_dim, device)
    k_d, v_d = random_kv(B, n_kv_heads, 4, head_dim, device)
    cache.update(1, 0, k_c, v_c)
    expect_capacity_error(lambda: cache.update(1, 9, k_d, v_d), max_len, 9, 4)
    k_e, v_e = random_kv(B, n_kv_heads, 2, head_dim, device)
    expect_prefix(cache.update(1, 9, k_e, v_e),
                  torch.cat([k_c, k_e], dim=2), torch.cat([v_c, v_e], dim=2),
                  "layer 1 after a refused write, then a write that fits",
                  "the refused write damaged the stored positions 0..8")
