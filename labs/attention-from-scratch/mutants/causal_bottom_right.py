# catches: sdpa_causal
# why: aligning the causal triangle to the bottom-right corner (the KV-cache decoding habit) instead
# why: of torch's top-left convention agrees only when Lq == Lk
def scaled_dot_product_attention(q, k, v, mask=None, causal=False):
    d = q.size(-1)
    Lq, Lk = q.size(-2), k.size(-2)
    scores = q @ k.transpose(-2, -1) / math.sqrt(d)  # (..., Lq, Lk)
    if causal:
        future = torch.ones(Lq, Lk, dtype=torch.bool, device=q.device).triu(diagonal=Lk - Lq + 1)
        scores = scores.masked_fill(future, float("-inf"))
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return torch.softmax(scores, dim=-1) @ v
