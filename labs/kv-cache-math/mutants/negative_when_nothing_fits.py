# catches: max_concurrent_sequences_fit
# why: without a clamp, weights bigger than the GPU give a negative count (Python's // rounds toward minus infinity)
def max_concurrent_sequences(gpu_bytes, weight_bytes, n_layers, n_kv_heads, head_dim, seq_len,
                             bytes_per_elem=2, reserved_bytes=0):
    per_sequence = kv_cache_bytes(n_layers, n_kv_heads, head_dim, seq_len, 1, bytes_per_elem)
    return (gpu_bytes - weight_bytes - reserved_bytes) // per_sequence
