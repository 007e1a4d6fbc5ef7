# catches: no_library_attention
# why: calling torch's fused attention passes every behavioural check but skips the exercise
import torch.nn.functional as F


def scaled_dot_product_attention(q, k, v, mask=None, causal=False):
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal)
