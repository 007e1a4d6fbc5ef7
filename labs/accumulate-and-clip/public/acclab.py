"""The accumulate-and-clip lab's tiny language model, its padded batches and its loss.

The notebook and the checks share this file, so both build the same model and the same batches.
The model is deliberately small (a few thousand parameters): every idea of the lab is about how
gradients are summed and scaled, which a tiny model shows exactly and in milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

IGNORE_INDEX = -100  # target at a padded position: F.cross_entropy skips it (its default ignore_index)
PAD_TOKEN = 0  # input token at a padded position; real tokens are 1 .. vocab - 1


@dataclass(frozen=True)
class LabConfig:
    vocab: int = 32  # token ids 0 .. 31, 0 is padding
    d_model: int = 16
    hidden: int = 32
    max_len: int = 16  # T: every batch is right-padded to this many positions
    min_len: int = 2  # shortest real sequence; lengths are drawn from min_len .. max_len
    batch_size: int = 32  # the batch of the notebook's demos


CONFIG = LabConfig()


class TinyLM(nn.Module):
    """Embedding -> causal running mean -> MLP -> vocabulary logits; tokens (B, T) -> logits (B, T, vocab).

    Position t sees tokens 0..t only (a running mean stands in for attention), so right padding never
    changes the logits of real tokens. Nothing mixes different sequences of the batch (no BatchNorm):
    that is what makes a batch's gradient the sum of its micro-batches' gradients.

    `seen_batch_sizes` records how many sequences each forward call received, so the notebook and the
    checks can see whether a step really ran in micro-batches.
    """

    def __init__(self, config: LabConfig = CONFIG):
        super().__init__()
        self.embed = nn.Embedding(config.vocab, config.d_model)
        self.mix = nn.Linear(2 * config.d_model, config.hidden)
        self.head = nn.Linear(config.hidden, config.vocab)
        self.seen_batch_sizes: list[int] = []

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        B, T = tokens.shape
        self.seen_batch_sizes.append(int(B))
        h = self.embed(tokens)  # (B, T, d_model)
        counts = torch.arange(1, T + 1, device=h.device, dtype=h.dtype).view(1, T, 1)  # (1, T, 1)
        context = h.cumsum(dim=1) / counts  # (B, T, d_model): mean of the tokens up to t
        z = F.gelu(self.mix(torch.cat([h, context], dim=-1)))  # (B, T, hidden)
        return self.head(z)  # (B, T, vocab)


def make_model(seed: int = 0, config: LabConfig = CONFIG) -> TinyLM:
    """A freshly initialised TinyLM; the same seed gives the same weights on every machine."""
    torch.manual_seed(seed)
    return TinyLM(config)


def make_batch(batch_size: int | None = None, seed: int = 0, device: str | torch.device = "cpu",
               lengths: int | list[int] | None = None,
               config: LabConfig = CONFIG) -> tuple[torch.Tensor, torch.Tensor]:
    """(tokens, targets), both (B, T) int64: sequences of different lengths, right-padded.

    targets[:, t] is the token after tokens[:, t] (next-token prediction) and IGNORE_INDEX where
    there is no real target. `lengths` (real tokens per sequence) is drawn at random when None, the
    same for every sequence when an int, or given one per sequence.

    The sequences follow a simple rule (next = 3 * token + 1, modulo the real vocabulary) with 20%
    random tokens, so the model has something to learn in the notebook's demo.
    """
    batch_size = config.batch_size if batch_size is None else batch_size
    T, real_vocab = config.max_len, config.vocab - 1
    generator = torch.Generator().manual_seed(seed)
    if lengths is None:
        lengths = torch.randint(config.min_len, T + 1, (batch_size,), generator=generator)
    elif isinstance(lengths, int):
        lengths = torch.full((batch_size,), lengths)
    else:
        lengths = torch.tensor(lengths)
    if lengths.shape != (batch_size,) or int(lengths.min()) < 1 or int(lengths.max()) > T:
        raise ValueError(f"lengths must be {batch_size} values in 1..{T}, got {lengths.tolist()}")

    sequence = torch.empty(batch_size, T + 1, dtype=torch.int64)  # (B, T + 1): one more for the last target
    sequence[:, 0] = torch.randint(0, real_vocab, (batch_size,), generator=generator)
    for t in range(T):
        follows_rule = (3 * sequence[:, t] + 1) % real_vocab
        noise = torch.randint(0, real_vocab, (batch_size,), generator=generator)
        sequence[:, t + 1] = torch.where(torch.rand(batch_size, generator=generator) < 0.8, follows_rule, noise)
    sequence += 1  # real tokens are 1 .. vocab - 1; 0 is padding

    tokens, targets = sequence[:, :T].clone(), sequence[:, 1:].clone()  # (B, T) each
    padded = torch.arange(T)[None, :] >= lengths[:, None]  # (B, T): True after the sequence's end
    tokens[padded] = PAD_TOKEN
    targets[padded] = IGNORE_INDEX
    return tokens.to(device), targets.to(device)


def lm_loss(logits: torch.Tensor, targets: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy over the real target tokens: logits (B, T, vocab), targets (B, T).

    reduction="mean" divides by the number of real target tokens IN THESE TARGETS, "sum" does not
    divide at all. Padding (IGNORE_INDEX) counts in neither.
    """
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE_INDEX, reduction=reduction)


class ParameterBag(nn.Module):
    """A few loose parameters with gradients already set: something to clip without a model.

    `params` is an nn.ParameterList, so a caller can pass `bag.params` (a container it may read
    twice) or `bag.parameters()` (a generator, readable once) to a clipping function.
    """

    def __init__(self, values: list[torch.Tensor], grads: list[torch.Tensor | None]):
        super().__init__()
        if len(values) != len(grads):
            raise ValueError(f"one gradient (or None) per value: {len(values)} values, {len(grads)} gradients")
        self.params = nn.ParameterList(nn.Parameter(value.detach().clone()) for value in values)
        for param, grad in zip(self.params, grads, strict=True):
            param.grad = None if grad is None else grad.detach().clone().to(param.device, param.dtype)

    def grads(self) -> list[torch.Tensor | None]:
        """Copies of the current gradients, None where a parameter has none."""
        return [None if p.grad is None else p.grad.detach().clone() for p in self.params]


def make_parameters(values: list[torch.Tensor], grads: list[torch.Tensor | None]) -> ParameterBag:
    """ParameterBag(values, grads): parameters equal to `values` whose .grad are `grads` (None allowed)."""
    return ParameterBag(values, grads)
