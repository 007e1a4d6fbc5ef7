"""Checks of greedy generation: cached decoding agrees with recomputation and skips its work."""

from __future__ import annotations

import torch

N_NEW = 16
# (model config, batch size, prompt length, what): MHA, GQA and MQA caches, prompts of 1..24 tokens
CASES = [
    ({"n_heads": 4, "n_kv_heads": 2}, 1, 1, "GQA model, one-token prompt"),
    ({"n_heads": 4, "n_kv_heads": 4}, 2, 7, "MHA model, batch of 2, 7-token prompts"),
    ({"n_heads": 4, "n_kv_heads": 1, "seed": 1}, 1, 24, "MQA model, 24-token prompt"),
]
LOGIT_RTOL = LOGIT_ATOL = 1e-4  # float32: cached and full passes differ by ~1e-6 (summation order)


def build_models(submission, trusted_tinygpt, config, device):
    """The same TinyGPT twice: in the submission (to generate) and here (to judge)."""
    model = submission.module("tinygpt").TinyGPT(**config).to(device)
    reference = trusted_tinygpt.TinyGPT(**config).to(device)
    return model, reference


def random_prompt(batch, length, device, seed):
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 64, (batch, length), generator=generator).to(device)


def expect_greedy_continuation(result, prompt, n_new, reference, what, cause):
    """`result` = (tokens, logits) must be greedy decoding of `reference` from `prompt`.

    Judged by teacher forcing: one trusted forward pass over the returned tokens gives the
    logits every step should have produced. Comparing per position (rather than with a separate
    greedy run) keeps a float-rounding near-tie from derailing a correct submission.
    """
    assert isinstance(result, (tuple, list)) and len(result) == 2, (
        f"{what}: generate must return (tokens, logits), got {type(result).__name__}"
    )
    tokens, logits = result
    B, P = prompt.shape
    vocab = reference.config.vocab_size
    for name, got, shape in (("tokens", tokens, (B, P + n_new)), ("logits", logits, (B, n_new, vocab))):
        assert isinstance(got, torch.Tensor) and tuple(got.shape) == shape, (
            f"{what}: expected {name} of shape {shape}, got "
            f"{tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__}; "
            "tokens are (B, P + n_new) with the prompt first, logits (B, n_new, vocab_size)"
        )
    assert not tokens.is_floating_point(), f"{what}: tokens should be integer ids, got {tokens.dtype}"
    assert logits.dtype == torch.float32, f"{what}: expected float32 logits, got {logits.dtype}"
    tokens = tokens.to(prompt.device).long()
    logits = logits.to(prompt.device)
    assert torch.equal(tokens[:, :P], prompt), (
        f"{what}: tokens[:, :P] must be the prompt unchanged; got {tokens[:, :P].tolist()} for "
        f"prompt {prompt.tolist()}"
    )
    with torch.no_grad():
        expected = reference(tokens)[:, P - 1: P + n_new - 1]  # (B, n_new, V): scores of each step
    error = (logits - expected).abs()
    bad = error > LOGIT_ATOL + LOGIT_RTOL * expected.abs()
    if bad.any():
        step = int(bad.any(dim=2).any(dim=0).nonzero()[0])
        raise AssertionError(
            f"{what}: the logits of step {step} (position {P + step}) differ from a full "
            f"recomputation over the same tokens by up to {error[:, step].max().item():.3g} "
            f"(tolerance {LOGIT_ATOL:g} + {LOGIT_RTOL:g} x |logit|, float32); steps 0..{step - 1} "
            f"agree. Likely cause: {cause}"
        )
    chosen = expected.gather(2, tokens[:, P:, None]).squeeze(2)  # (B, n_new)
    best = expected.max(dim=2)
    not_greedy = chosen < best.values - LOGIT_ATOL  # ties within tolerance count as greedy
    if not_greedy.any():
        b, step = (int(i) for i in not_greedy.nonzero()[0])
        raise AssertionError(
            f"{what}: step {step} of sequence {b} chose token {int(tokens[b, P + step])}, but the "
            f"highest logit is token {int(best.indices[b, step])} "
            f"({best.values[b, step].item():.4f} vs {chosen[b, step].item():.4f}); greedy "
            "decoding appends the argmax of the last position's logits"
        )


def test_recompute_generation_greedy(submission, trusted_tinygpt, device):
    for index, (config, batch, length, what) in enumerate(CASES[:2]):
        model, reference = build_models(submission, trusted_tinygpt, config, device)
        prompt = random_prompt(batch, length, device, seed=index)
        result = submission.generate(model, prompt, N_NEW, use_cache=False)
        expect_greedy_continuation(
            result, prompt, N_NEW, reference, f"generate(use_cache=False), {what}",
            "each step must run the model on the whole sequence so far and take logits[:, -1]",
        )


def test_cached_matches_recompute(submission, trusted_tinygpt, device):
    for index, (config, batch, length, what) in enumerate(CASES):
        model, reference = build_models(submission, trusted_tinygpt, config, device)
        prompt = random_prompt(batch, length, device, seed=10 + index)
        result = submission.generate(model, prompt, N_NEW, use_cache=True)
        expect_greedy_continuation(
            result, prompt, N_NEW, reference, f"generate(use_cache=True), {what}",
            "a wrong start_pos for the new token (it sits at position tokens.shape[1] - 1 once "
            "appended), a cache that does not return all earlier positions, or layers sharing "
            "one cache slot",
        )


def test_cached_steps_attend_one_token(submission, trusted_tinygpt, device):
    """After the prefill, every cached step sends exactly one query through each layer.

    Read from the model's own `attention_log` ((layer, n_queries, n_keys) per attention call),
    which lives in the submission process: a submission that rewrites the log can forge it. The
    timing check is the independent evidence that the work was really skipped.
    """
    config = {"n_heads": 4, "n_kv_heads": 2}
    P, n_new = 9, 12
    model = submission.module("tinygpt").TinyGPT(**config).to(device)
    n_layers = trusted_tinygpt.TinyGPTConfig(**config).n_layers
    prompt = random_prompt(1, P, device, seed=20)
    model.reset_attention_log()
    submission.generate(model, prompt, n_new, use_cache=True)
    log = [tuple(int(x) for x in entry) for entry in model.attention_log]

    assert log and len(log) % n_layers == 0, (
        f"expected the attention calls to come in groups of {n_layers} (one per layer per forward "
        f"pass), got {len(log)} calls"
    )
    forwards = [log[i: i + n_layers] for i in range(0, len(log), n_layers)]
    seen = 0  # positions already in the cache
    for index, calls in enumerate(forwards):
        n_queries, n_keys = calls[0][1], calls[0][2]
        if n_keys != seen + n_queries:
            if seen and n_keys == n_queries:
                cause = ("the keys restart at position 0: this step recomputed the whole prefix "
                         "instead of reusing the cache")
            else:
                cause = (f"start_pos should be {seen} (the number of positions already cached); "
                         f"the model attended to {n_keys} keys, so start_pos was "
                         f"{n_keys - n_queries}")
            raise AssertionError(
                f"forward pass {index} (calls {calls}): {n_queries} new query position(s) after "
                f"{seen} cached positions should attend to {seen + n_queries} keys, got {n_keys}; "
                f"likely cause: {cause}"
            )
        if seen >= P and n_queries != 1:
            raise AssertionError(
                f"forward pass {index}: after the {P}-token prompt was cached, a step sent "
                f"{n_queries} queries through attention; a cached step runs the new token only"
            )
        seen += n_queries

    recompute_queries = sum(P + step for step in range(n_new))
    assert seen in (P + n_new - 1, P + n_new), (
        f"a {P}-token prompt and {n_new} new tokens should send {P + n_new - 1} query positions "
        f"through each layer (the prompt once, then each new token but the last), got {seen}"
        f"; recomputation would send {recompute_queries}"
    )
