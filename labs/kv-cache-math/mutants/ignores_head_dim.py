# catches: bytes_from_hf_config
# why: head_dim = hidden_size // num_attention_heads is true for Llama but not for Gemma-7B (16 heads of 256 in a 3072-wide model)
def kv_bytes_per_token(config, bytes_per_elem=2):
    n_heads = config["num_attention_heads"]
    n_kv_heads = config.get("num_key_value_heads", n_heads)
    return kv_cache_bytes(config["num_hidden_layers"], n_kv_heads, config["hidden_size"] // n_heads,
                          seq_len=1, bytes_per_elem=bytes_per_elem)
