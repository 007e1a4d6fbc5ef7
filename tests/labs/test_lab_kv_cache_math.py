"""Unit tests of the kv-cache-math lab's tiny GPT: determinism, the cache protocol, the log."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from grader.testing import trusted_public_module

PUBLIC = Path(__file__).resolve().parents[2] / "labs" / "kv-cache-math" / "public"


def _load(name: str):
    """The lab's public/ module, loaded the way its checks load it (no clash with other labs)."""
    return trusted_public_module(PUBLIC.parent, name)


tinygpt = _load("tinygpt")
TinyGPT, TinyGPTConfig = tinygpt.TinyGPT, tinygpt.TinyGPTConfig


class ListCache:
    """The simplest cache honouring the protocol: per-layer tensors grown with torch.cat."""

    def __init__(self):
        self.k, self.v = {}, {}

    def update(self, layer, start_pos, k_new, v_new):
        if layer in self.k:
            assert self.k[layer].shape[2] == start_pos, "this test cache only appends"
            self.k[layer] = torch.cat([self.k[layer], k_new], dim=2)
            self.v[layer] = torch.cat([self.v[layer], v_new], dim=2)
        else:
            assert start_pos == 0
            self.k[layer], self.v[layer] = k_new, v_new
        return self.k[layer], self.v[layer]


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny ops on a shared 2-core machine: threads waiting on each other cost more than they give."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# -- construction ---------------------------------------------------------------------------------
def test_weights_depend_on_the_config_only():
    torch.manual_seed(123)
    first = TinyGPT(n_kv_heads=1, seed=3)
    torch.manual_seed(456)  # a different global RNG state must not matter
    second = TinyGPT(TinyGPTConfig(n_kv_heads=1, seed=3))
    for (name, a), (_, b) in zip(first.state_dict().items(), second.state_dict().items(), strict=True):
        assert torch.equal(a, b), f"{name} differs between two builds of the same config"
    other_seed = TinyGPT(n_kv_heads=1, seed=4)
    assert not torch.equal(first.lm_head.weight, other_seed.lm_head.weight)


def test_the_global_rng_is_left_alone():
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    TinyGPT()
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize("overrides, fragment", [
    ({"d_model": 30, "n_heads": 4}, "multiple of n_heads"),
    ({"n_heads": 4, "n_kv_heads": 3}, "multiple of n_kv_heads"),
])
def test_bad_configs_are_refused(overrides, fragment):
    with pytest.raises(ValueError, match=fragment):
        TinyGPTConfig(**overrides)


def test_config_and_overrides_cannot_be_mixed():
    with pytest.raises(TypeError):
        TinyGPT(TinyGPTConfig(), n_layers=3)


def test_kv_projections_have_kv_heads_only():
    model = TinyGPT(n_heads=4, n_kv_heads=1, d_model=64)
    attn = model.blocks[0].attn
    assert attn.q_proj.out_features == 64
    assert attn.k_proj.out_features == attn.v_proj.out_features == 16  # one head of 64 / 4


def test_logits_have_clear_winners():
    """The init is scaled so that greedy decoding is not decided by float rounding."""
    model = TinyGPT()
    with torch.no_grad():
        logits = model(torch.randint(0, 64, (4, 32), generator=torch.Generator().manual_seed(0)))
    top2 = logits.topk(2, dim=-1).values
    margin = top2[..., 0] - top2[..., 1]
    assert logits.std() > 1.0
    assert (margin > 1e-3).float().mean() > 0.99


# -- the cache protocol ---------------------------------------------------------------------------
@pytest.mark.parametrize("n_kv_heads", [4, 2, 1])
def test_cached_forward_equals_full_forward(n_kv_heads):
    model = TinyGPT(n_kv_heads=n_kv_heads)
    ids = torch.randint(0, 64, (2, 13), generator=torch.Generator().manual_seed(1))
    cache = ListCache()
    with torch.no_grad():
        full = model(ids)
        pieces = [model(ids[:, :5], cache=cache, start_pos=0)]  # a prefill of 5
        pieces += [model(ids[:, 5:9], cache=cache, start_pos=5)]  # a chunk of 4
        pieces += [model(ids[:, t:t + 1], cache=cache, start_pos=t) for t in range(9, 13)]
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, rtol=1e-5, atol=1e-5)
    assert cache.k[0].shape == (2, n_kv_heads, 13, model.config.head_dim)


def test_a_wrong_start_pos_changes_the_logits():
    model = TinyGPT()
    ids = torch.randint(0, 64, (1, 8), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        full = model(ids)[:, -1]
        cache = ListCache()
        model(ids[:, :7], cache=cache, start_pos=0)
        cache.k = {layer: torch.cat([k, torch.zeros_like(k[:, :, :1])], dim=2) for layer, k in cache.k.items()}
        cache.v = {layer: torch.cat([v, torch.zeros_like(v[:, :, :1])], dim=2) for layer, v in cache.v.items()}
        shifted = model(ids[:, 7:], cache=cache, start_pos=8)[:, -1]  # one past the real position
    assert (shifted - full).abs().max() > 0.1


def test_start_pos_without_a_cache_is_refused():
    with pytest.raises(ValueError, match="without a cache"):
        TinyGPT()(torch.zeros(1, 1, dtype=torch.long), start_pos=3)


def test_positions_past_max_seq_len_are_refused():
    model = TinyGPT(max_seq_len=8)
    with pytest.raises(ValueError, match="max_seq_len=8"):
        model(torch.zeros(1, 9, dtype=torch.long))


def test_a_cache_returning_the_wrong_length_is_refused():
    class NewOnly:
        def update(self, layer, start_pos, k_new, v_new):
            return k_new, v_new

    with pytest.raises(ValueError, match="expected start_pos \\+ T = 4"):
        TinyGPT()(torch.zeros(1, 1, dtype=torch.long), cache=NewOnly(), start_pos=3)


# -- the attention log ----------------------------------------------------------------------------
def test_the_log_records_queries_and_keys_per_layer():
    model = TinyGPT(n_layers=3)
    cache = ListCache()
    with torch.no_grad():
        model(torch.zeros(1, 4, dtype=torch.long), cache=cache, start_pos=0)
        model(torch.zeros(1, 1, dtype=torch.long), cache=cache, start_pos=4)
    assert model.attention_log == [(0, 4, 4), (1, 4, 4), (2, 4, 4), (0, 1, 5), (1, 1, 5), (2, 1, 5)]
    log = model.attention_log
    model.reset_attention_log()
    assert model.attention_log == [] and model.attention_log is log


# -- the recomputation baseline -------------------------------------------------------------------
def test_greedy_generate_by_recompute():
    model = TinyGPT()
    prompt = torch.randint(0, 64, (2, 5), generator=torch.Generator().manual_seed(3))
    tokens, logits = tinygpt.greedy_generate_by_recompute(model, prompt, 6)
    assert tokens.shape == (2, 11) and logits.shape == (2, 6, 64)
    assert torch.equal(tokens[:, :5], prompt)
    with torch.no_grad():
        expected = model(tokens)[:, 4:10]
    torch.testing.assert_close(logits, expected, rtol=1e-5, atol=1e-5)
    assert torch.equal(tokens[:, 5:], logits.argmax(dim=-1))
