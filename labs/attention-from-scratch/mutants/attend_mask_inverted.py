# catches: sdpa_attend_mask, sdpa_mask_with_causal
# why: reading mask=True as "blocked" (nn.MultiheadAttention's convention) instead of "may attend"
# why: (torch's functional convention) fills exactly the keys that should be kept
def scaled_dot_product_attention(q, k, v, mask=None, causal=False):
    d = q.size(-1)
    Lq, Lk = q.size(-2), k.size(-2)
    scores = q @ k.transpose(-2, -1) / math.sqrt(d)  # (..., Lq, Lk)
    if causal:
        future = torch.ones(Lq, Lk, dtype=torch.bool, device=q.device).triu(diagonal=1)
        scores = scores.masked_fill(future, float("-inf"))
    if mask is not None:
        scores = scores.masked_fill(mask, float("-inf"))  # should be ~mask
    return torch.softmax(scores, dim=-1) @ v
