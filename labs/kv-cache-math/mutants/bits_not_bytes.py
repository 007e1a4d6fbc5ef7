# catches: kv_cache_bytes_formula, per_token_published, bytes_from_hf_config, max_concurrent_sequences_fit
# why: "fp16 is 16" slips in as a size in bits, so every cache looks 8x bigger than it is
def kv_cache_bytes(n_layers, n_kv_heads, head_dim, seq_len, batch_size=1, bytes_per_elem=2):
    bits_per_elem = 8 * bytes_per_elem
    return 2 * n_layers * n_kv_heads * head_dim * seq_len * batch_size * bits_per_elem


LLAMA2_7B_KV_BYTES_PER_TOKEN = kv_bytes_per_token(LLAMA2_7B_CONFIG, bytes_per_elem=2)
LLAMA3_8B_KV_BYTES_PER_TOKEN = kv_bytes_per_token(LLAMA3_8B_CONFIG, bytes_per_elem=2)
GEMMA_2B_KV_BYTES_PER_TOKEN = kv_bytes_per_token(GEMMA_2B_CONFIG, bytes_per_elem=2)
