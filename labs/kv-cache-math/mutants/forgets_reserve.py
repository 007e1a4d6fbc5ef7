# catches: max_concurrent_sequences_fit
# why: the reserve for activations and the CUDA context is easy to leave out; the engine then admits sequences it cannot hold and OOMs under load
def max_concurrent_sequences(gpu_bytes, weight_bytes, n_layers, n_kv_heads, head_dim, seq_len,
                             bytes_per_elem=2, reserved_bytes=0):
    per_sequence = kv_cache_bytes(n_layers, n_kv_heads, head_dim, seq_len, 1, bytes_per_elem)
    return max(0, (gpu_bytes - weight_bytes) // per_sequence)
