# catches: module_matches_torch, module_gradients
# why: returning the merged heads without out_proj: the shapes match, but the heads are never mixed
# why: and out_proj's weights never receive a gradient
class MultiHeadSelfAttention(MultiHeadSelfAttention):
    def forward(self, x, causal=False, key_padding_mask=None):
        B, T, C = x.shape
        nh, hs = self.n_heads, C // self.n_heads
        q = self.q_proj(x).view(B, T, nh, hs).transpose(1, 2)  # (B, nh, T, hs)
        k = self.k_proj(x).view(B, T, nh, hs).transpose(1, 2)
        v = self.v_proj(x).view(B, T, nh, hs).transpose(1, 2)
        mask = None
        if key_padding_mask is not None:
            mask = ~key_padding_mask[:, None, None, :]
        out = scaled_dot_product_attention(q, k, v, mask=mask, causal=causal)  # (B, nh, T, hs)
        return out.transpose(1, 2).reshape(B, T, C)  # out_proj missing
