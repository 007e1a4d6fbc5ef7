# catches: sdpa_causal, module_masks
# why: masking with tril instead of triu(1) blocks the past and keeps the future, so every token
# why: sees the tokens after it (training loss looks great, generation is garbage)
def scaled_dot_product_attention(q, k, v, mask=None, causal=False):
    d = q.size(-1)
    Lq, Lk = q.size(-2), k.size(-2)
    scores = q @ k.transpose(-2, -1) / math.sqrt(d)  # (..., Lq, Lk)
    if causal:
        blocked = torch.ones(Lq, Lk, dtype=torch.bool, device=q.device).tril(diagonal=-1)  # the past, not the future
        scores = scores.masked_fill(blocked, float("-inf"))
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return torch.softmax(scores, dim=-1) @ v
