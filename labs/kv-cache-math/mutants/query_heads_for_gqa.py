# catches: per_token_published, bytes_from_hf_config
# why: num_attention_heads is the first head count in a config; on a GQA or MQA model the cache only stores num_key_value_heads
def kv_bytes_per_token(config, bytes_per_elem=2):
    head_dim = config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"]
    return kv_cache_bytes(config["num_hidden_layers"], config["num_attention_heads"], head_dim,
                          seq_len=1, bytes_per_elem=bytes_per_elem)


LLAMA2_7B_KV_BYTES_PER_TOKEN = kv_bytes_per_token(LLAMA2_7B_CONFIG, bytes_per_elem=2)
LLAMA3_8B_KV_BYTES_PER_TOKEN = kv_bytes_per_token(LLAMA3_8B_CONFIG, bytes_per_elem=2)
GEMMA_2B_KV_BYTES_PER_TOKEN = kv_bytes_per_token(GEMMA_2B_CONFIG, bytes_per_elem=2)
