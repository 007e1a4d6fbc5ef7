# catches: cache_update_returns_prefix, cached_matches_recompute
# why: a cache with one buffer (B, n_kv_heads, max_len, head_dim) instead of one per layer lets every layer overwrite the previous layer's keys
class KVCache:
    def __init__(self, n_layers, batch_size, n_kv_heads, head_dim, max_len,
                 dtype=torch.float32, device="cpu"):
        shape = (batch_size, n_kv_heads, max_len, head_dim)
        self.k = torch.zeros(shape, dtype=dtype, device=device)
        self.v = torch.zeros(shape, dtype=dtype, device=device)
        self.max_len = max_len

    def update(self, layer, start_pos, k_new, v_new):
        end = start_pos + k_new.shape[2]
        if end > self.max_len:
            raise ValueError(f"KV cache full: needs {end} positions, max_len={self.max_len}")
        self.k[:, :, start_pos:end] = k_new
        self.v[:, :, start_pos:end] = v_new
        return self.k[:, :, :end], self.v[:, :, :end]
