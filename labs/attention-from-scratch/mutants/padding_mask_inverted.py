# catches: module_masks
# why: key_padding_mask marks padding with True (nn.MultiheadAttention's convention) but the
# why: attention mask means "may attend"; passed on without ~, every token attends only to padding
class MultiHeadSelfAttention(MultiHeadSelfAttention):
    def forward(self, x, causal=False, key_padding_mask=None):
        B, T, C = x.shape
        nh, hs = self.n_heads, C // self.n_heads
        q = self.q_proj(x).view(B, T, nh, hs).transpose(1, 2)  # (B, nh, T, hs)
        k = self.k_proj(x).view(B, T, nh, hs).transpose(1, 2)
        v = self.v_proj(x).view(B, T, nh, hs).transpose(1, 2)
        mask = None
        if key_padding_mask is not None:
            mask = key_padding_mask[:, None, None, :]  # should be ~key_padding_mask
        out = scaled_dot_product_attention(q, k, v, mask=mask, causal=causal)  # (B, nh, T, hs)
        return self.out_proj(out.transpose(1, 2).reshape(B, T, C))
