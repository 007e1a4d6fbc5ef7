# catches: sdpa_matches_torch, module_matches_torch
# why: softmax over dim=-2 normalises over the queries instead of the keys; with a square score
# why: matrix nothing crashes, but each query's weights no longer sum to 1
def scaled_dot_product_attention(q, k, v, mask=None, causal=False):
    d = q.size(-1)
    Lq, Lk = q.size(-2), k.size(-2)
    scores = q @ k.transpose(-2, -1) / math.sqrt(d)  # (..., Lq, Lk)
    if causal:
        future = torch.ones(Lq, Lk, dtype=torch.bool, device=q.device).triu(diagonal=1)
        scores = scores.masked_fill(future, float("-inf"))
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return torch.softmax(scores, dim=-2) @ v  # normalises each key's column, not each query's row
