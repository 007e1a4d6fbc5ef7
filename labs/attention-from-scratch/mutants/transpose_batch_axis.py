# catches: sdpa_matches_torch
# why: k.transpose(1, 2) is the right transpose only for 3-d (batch, L, d) inputs; with heads as an
# why: extra batch dimension (or none at all) it swaps the wrong axes
def scaled_dot_product_attention(q, k, v, mask=None, causal=False):
    d = q.size(-1)
    Lq, Lk = q.size(-2), k.size(-2)
    scores = q @ k.transpose(1, 2) / math.sqrt(d)  # should be transpose(-2, -1)
    if causal:
        future = torch.ones(Lq, Lk, dtype=torch.bool, device=q.device).triu(diagonal=1)
        scores = scores.masked_fill(future, float("-inf"))
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return torch.softmax(scores, dim=-1) @ v
