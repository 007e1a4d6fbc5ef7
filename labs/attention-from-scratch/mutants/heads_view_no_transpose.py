# catches: module_matches_torch, module_masks, module_gradients
# why: view(B, n_heads, T, head_size) straight from (B, T, C) has the right shape but each "head"
# why: holds pieces of several tokens; the merge back with a plain view undoes nothing
class MultiHeadSelfAttention(MultiHeadSelfAttention):
    def forward(self, x, causal=False, key_padding_mask=None):
        B, T, C = x.shape
        nh, hs = self.n_heads, C // self.n_heads
        q = self.q_proj(x).view(B, nh, T, hs)  # should be view(B, T, nh, hs).transpose(1, 2)
        k = self.k_proj(x).view(B, nh, T, hs)
        v = self.v_proj(x).view(B, nh, T, hs)
        mask = None
        if key_padding_mask is not None:
            mask = ~key_padding_mask[:, None, None, :]
        out = scaled_dot_product_attention(q, k, v, mask=mask, causal=causal)  # (B, nh, T, hs)
        return self.out_proj(out.reshape(B, T, C))
