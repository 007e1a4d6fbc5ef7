# catches: sdpa_matches_torch, module_matches_torch
# why: forgetting the 1/sqrt(d) scaling makes the softmax far too peaked as d grows (the weights
# why: head towards one-hot and their gradients vanish), yet every shape still looks right
def scaled_dot_product_attention(q, k, v, mask=None, causal=False):
    Lq, Lk = q.size(-2), k.size(-2)
    scores = q @ k.transpose(-2, -1)  # (..., Lq, Lk) -- no / sqrt(d)
    if causal:
        future = torch.ones(Lq, Lk, dtype=torch.bool, device=q.device).triu(diagonal=1)
        scores = scores.masked_fill(future, float("-inf"))
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return torch.softmax(scores, dim=-1) @ v
