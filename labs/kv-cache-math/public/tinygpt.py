"""A tiny GPT whose attention can read and write a KV cache, for the kv-cache-math lab.

The model is deliberately small (2 layers, d_model 64, vocabulary 64) so that it runs in
milliseconds on a CPU, and its weights are a pure function of its config (seed included), so two
processes that build `TinyGPT(TinyGPTConfig(...))` get bit-identical models.

How attention uses a cache
--------------------------
`model(idx, cache=None, start_pos=0)` runs the model on the tokens `idx` (B, T) that sit at absolute
positions `start_pos .. start_pos + T - 1` of the sequence:

- without a cache, the tokens attend to each other only (causally): this is recomputation, and
  `idx` must be the whole sequence so far (`start_pos` stays 0);
- with a cache, every attention layer computes keys and values for the T new tokens only and calls

      k_all, v_all = cache.update(layer, start_pos, k_new, v_new)
      #   k_new, v_new: (B, n_kv_heads, T, head_dim)
      #   k_all, v_all: (B, n_kv_heads, start_pos + T, head_dim), keys of positions 0 .. start_pos+T-1

  and the T new queries attend to all of `k_all` (causally). Any object with that `update` method
  works as a cache; the lab asks you to write one.

Keys and values are cached with `n_kv_heads` heads, before they are repeated to the `n_heads`
query heads: with grouped-query attention (`n_kv_heads < n_heads`) the cache is
`n_heads / n_kv_heads` times smaller than with multi-head attention, which is the whole point.

What the model records
----------------------
Every attention call appends `(layer, n_queries, n_keys)` to `model.attention_log`, so one can see
how much work a generation loop did: recomputation processes the whole prefix at every step, a
working cache processes one new query per layer per step. `model.reset_attention_log()` empties it.
The log is bookkeeping inside the student's process, not a security boundary: code in the same
process can rewrite it, which is why the lab's timing check does not rely on it alone.

Trade-offs: attention is written out with matmul and softmax instead of
`torch.nn.functional.scaled_dot_product_attention` so that the masking with an offset is visible;
it is slower and uses more memory than the fused kernel, which does not matter at this size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class TinyGPTConfig:
    """Shape of a TinyGPT. The defaults build a 2-layer grouped-query model."""

    vocab_size: int = 64  # token ids are plain integers; no tokenizer is needed to study caching
    max_seq_len: int = 640  # room for a 256-token prompt, 256 new tokens and some slack
    n_layers: int = 2
    n_heads: int = 4  # query heads
    n_kv_heads: int = 2  # key/value heads: == n_heads is MHA, 1 is MQA, in between is GQA
    d_model: int = 64
    mlp_ratio: int = 4  # hidden width of the MLP is mlp_ratio * d_model, as in GPT-2
    seed: int = 0  # weights are drawn from this seed only, never from the global RNG

    def __post_init__(self) -> None:
        if self.d_model % self.n_heads:
            raise ValueError(
                f"d_model ({self.d_model}) must be a multiple of n_heads ({self.n_heads})"
            )
        if self.n_heads % self.n_kv_heads:
            raise ValueError(
                f"n_heads ({self.n_heads}) must be a multiple of n_kv_heads ({self.n_kv_heads}): "
                "each key/value head serves a whole group of query heads"
            )

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads


class CausalSelfAttention(nn.Module):
    """Causal self-attention with grouped key/value heads and an optional KV cache."""

    def __init__(self, config: TinyGPTConfig, layer: int, attention_log: list):
        super().__init__()
        self.layer = layer
        self.n_heads = config.n_heads
        self.n_kv_heads = config.n_kv_heads
        self.head_dim = config.head_dim
        self.q_proj = nn.Linear(config.d_model, config.n_heads * config.head_dim, bias=False)
        self.k_proj = nn.Linear(config.d_model, config.n_kv_heads * config.head_dim, bias=False)
        self.v_proj = nn.Linear(config.d_model, config.n_kv_heads * config.head_dim, bias=False)
        self.out_proj = nn.Linear(config.d_model, config.d_model, bias=False)
        self._attention_log = attention_log  # shared with the model, appended on every call

    def forward(self, x: torch.Tensor, cache=None, start_pos: int = 0) -> torch.Tensor:
        B, T, C = x.shape
        hd = self.head_dim
        q = self.q_proj(x).view(B, T, self.n_heads, hd).transpose(1, 2)  # (B, nh, T, hd)
        k = self.k_proj(x).view(B, T, self.n_kv_heads, hd).transpose(1, 2)  # (B, nkv, T, hd)
        v = self.v_proj(x).view(B, T, self.n_kv_heads, hd).transpose(1, 2)  # (B, nkv, T, hd)
        if cache is not None:
            k, v = cache.update(self.layer, start_pos, k, v)  # (B, nkv, S, hd), S = start_pos + T
        elif start_pos != 0:
            raise ValueError(
                f"start_pos={start_pos} without a cache: the earlier positions' keys and values "
                "are nowhere to be found. Without a cache, pass the whole sequence and start_pos=0."
            )
        S = k.shape[2]
        if S != start_pos + T:
            raise ValueError(
                f"layer {self.layer}: the cache returned {S} key positions for start_pos="
                f"{start_pos} and {T} new tokens; expected start_pos + T = {start_pos + T}. "
                "update() must return the keys of positions 0 .. start_pos + T - 1."
            )
        self._attention_log.append((self.layer, T, S))

        group = self.n_heads // self.n_kv_heads
        k = k.repeat_interleave(group, dim=1)  # (B, nh, S, hd): each kv head serves `group` queries
        v = v.repeat_interleave(group, dim=1)  # (B, nh, S, hd)
        scores = (q @ k.transpose(-2, -1)) / math.sqrt(hd)  # (B, nh, T, S)
        # Query i sits at absolute position start_pos + i and may see keys 0 .. start_pos + i.
        query_pos = torch.arange(start_pos, start_pos + T, device=x.device)[:, None]  # (T, 1)
        key_pos = torch.arange(S, device=x.device)[None, :]  # (1, S)
        scores = scores.masked_fill(key_pos > query_pos, float("-inf"))
        y = F.softmax(scores, dim=-1) @ v  # (B, nh, T, hd)
        y = y.transpose(1, 2).reshape(B, T, C)  # (B, T, C)
        return self.out_proj(y)


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, config: TinyGPTConfig, layer: int, attention_log: list):
        super().__init__()
        self.ln_attn = nn.LayerNorm(config.d_model)
        self.attn = CausalSelfAttention(config, layer, attention_log)
        self.ln_mlp = nn.LayerNorm(config.d_model)
        self.mlp = nn.Sequential(
            nn.Linear(config.d_model, config.mlp_ratio * config.d_model),
            nn.GELU(),
            nn.Linear(config.mlp_ratio * config.d_model, config.d_model),
        )

    def forward(self, x: torch.Tensor, cache=None, start_pos: int = 0) -> torch.Tensor:
        x = x + self.attn(self.ln_attn(x), cache=cache, start_pos=start_pos)
        return x + self.mlp(self.ln_mlp(x))


class TinyGPT(nn.Module):
    """A GPT-2-shaped decoder: token + learned position embeddings, blocks, final norm, head."""

    def __init__(self, config: TinyGPTConfig | None = None, **overrides):
        super().__init__()
        if config is None:
            config = TinyGPTConfig(**overrides)
        elif overrides:
            raise TypeError("pass either a TinyGPTConfig or keyword overrides, not both")
        self.config = config
        self.attention_log: list[tuple[int, int, int]] = []  # (layer, n_queries, n_keys)
        # torch's default initialisers draw from the global RNG; fork it so that building a model
        # does not shift the caller's random numbers (the draws are overwritten below anyway).
        with torch.random.fork_rng(devices=[]):
            self.tok_emb = nn.Embedding(config.vocab_size, config.d_model)
            self.pos_emb = nn.Embedding(config.max_seq_len, config.d_model)
            self.blocks = nn.ModuleList(
                [Block(config, layer, self.attention_log) for layer in range(config.n_layers)]
            )
            self.ln_final = nn.LayerNorm(config.d_model)
            self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        self._init_weights(config.seed)

    @torch.no_grad()
    def _init_weights(self, seed: int) -> None:
        # A private generator keeps the weights independent of the global RNG. The scales are
        # larger than GPT-2's 0.02 so that an untrained model still has clear argmax winners:
        # near-ties would make greedy decoding hypersensitive to float rounding.
        gen = torch.Generator().manual_seed(seed)
        for name, p in self.named_parameters():
            if name.endswith("bias"):
                p.zero_()
            elif "ln_" in name:
                p.fill_(1.0)
            elif p.dim() == 2 and "emb" in name:
                p.copy_(torch.randn(p.shape, generator=gen))
            else:  # Linear weights (out, in): unit-variance outputs for unit-variance inputs
                p.copy_(torch.randn(p.shape, generator=gen) / math.sqrt(p.shape[1]))
        self.lm_head.weight.mul_(2.0)  # logits spread over a few units

    def reset_attention_log(self) -> None:
        """Forget every recorded attention call (the list object stays the same)."""
        self.attention_log.clear()

    def forward(self, idx: torch.Tensor, cache=None, start_pos: int = 0) -> torch.Tensor:
        """Logits (B, T, vocab_size) for the tokens idx (B, T) at positions start_pos.. ."""
        B, T = idx.shape
        if start_pos < 0 or start_pos + T > self.config.max_seq_len:
            raise ValueError(
                f"positions {start_pos}..{start_pos + T - 1} are outside the model's "
                f"0..{self.config.max_seq_len - 1} (max_seq_len={self.config.max_seq_len})"
            )
        pos = torch.arange(start_pos, start_pos + T, device=idx.device)  # (T,)
        x = self.tok_emb(idx) + self.pos_emb(pos)  # (B, T, C)
        for block in self.blocks:
            x = block(x, cache=cache, start_pos=start_pos)
        return self.lm_head(self.ln_final(x))  # (B, T, vocab_size)


def greedy_generate_by_recompute(model: TinyGPT, prompt_ids: torch.Tensor, n_new: int):
    """Greedy decoding with no cache: the whole sequence is re-run at every step.

    Returns (tokens (B, P + n_new), logits (B, n_new, vocab_size)), where logits[:, i] are the
    scores that chose tokens[:, P + i]. This is the slow baseline a cache must agree with.
    """
    tokens = prompt_ids
    step_logits = []
    with torch.no_grad():
        for _ in range(n_new):
            logits = model(tokens)[:, -1, :]  # (B, V): only the last position predicts the next
            step_logits.append(logits)
            tokens = torch.cat([tokens, logits.argmax(dim=-1, keepdim=True)], dim=1)
    return tokens, torch.stack(step_logits, dim=1)
