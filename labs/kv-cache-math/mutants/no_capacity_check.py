# catches: cache_capacity_error
# why: slicing past the end of a preallocated buffer does not raise an IndexError in torch; it fails later with a shape mismatch that says nothing about the cache
class KVCache:
    def __init__(self, n_layers, batch_size, n_kv_heads, head_dim, max_len,
                 dtype=torch.float32, device="cpu"):
        shape = (n_layers, batch_size, n_kv_heads, max_len, head_dim)
        self.k = torch.zeros(shape, dtype=dtype, device=device)
        self.v = torch.zeros(shape, dtype=dtype, device=device)

    def update(self, layer, start_pos, k_new, v_new):
        end = start_pos + k_new.shape[2]
        self.k[layer, :, :, start_pos:end] = k_new
        self.v[layer, :, :, start_pos:end] = v_new
        return self.k[layer, :, :, :end], self.v[layer, :, :, :end]
