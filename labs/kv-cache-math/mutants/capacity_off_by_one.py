# catches: cache_capacity_error
# why: testing end >= max_len instead of end > max_len refuses the last slot, so a cache sized P + n_new fails on the final step
class KVCache:
    def __init__(self, n_layers, batch_size, n_kv_heads, head_dim, max_len,
                 dtype=torch.float32, device="cpu"):
        shape = (n_layers, batch_size, n_kv_heads, max_len, head_dim)
        self.k = torch.zeros(shape, dtype=dtype, device=device)
        self.v = torch.zeros(shape, dtype=dtype, device=device)
        self.max_len = max_len

    def update(self, layer, start_pos, k_new, v_new):
        end = start_pos + k_new.shape[2]
        if end >= self.max_len:
            raise ValueError(f"KV cache full: needs {end} positions, max_len={self.max_len}")
        self.k[layer, :, :, start_pos:end] = k_new
        self.v[layer, :, :, start_pos:end] = v_new
        return self.k[layer, :, :, :end], self.v[layer, :, :, :end]
