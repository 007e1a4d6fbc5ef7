"""Checks of per-token KV sizes of published models and of reading them from a config dict."""

from __future__ import annotations

KiB = 2**10

# Relevant fields of released Hugging Face config.json files. Extra keys stay in on purpose: a
# reader must pick the right ones.
LLAMA2_7B = {"num_hidden_layers": 32, "hidden_size": 4096, "num_attention_heads": 32,
             "intermediate_size": 11008, "vocab_size": 32000, "torch_dtype": "float16"}
LLAMA3_8B = {"num_hidden_layers": 32, "hidden_size": 4096, "num_attention_heads": 32,
             "num_key_value_heads": 8, "intermediate_size": 14336, "vocab_size": 128256,
             "torch_dtype": "bfloat16"}
LLAMA2_70B = {"num_hidden_layers": 80, "hidden_size": 8192, "num_attention_heads": 64,
              "num_key_value_heads": 8, "intermediate_size": 28672, "torch_dtype": "float16"}
MISTRAL_7B = {"num_hidden_layers": 32, "hidden_size": 4096, "num_attention_heads": 32,
              "num_key_value_heads": 8, "head_dim": None, "torch_dtype": "bfloat16"}
GEMMA_2B = {"num_hidden_layers": 18, "hidden_size": 2048, "num_attention_heads": 8,
            "num_key_value_heads": 1, "head_dim": 256, "torch_dtype": "bfloat16"}
GEMMA_7B = {"num_hidden_layers": 28, "hidden_size": 3072, "num_attention_heads": 16,
            "num_key_value_heads": 16, "head_dim": 256, "torch_dtype": "bfloat16"}


def reference_per_token(config, bytes_per_elem=2, *, kv_heads_key="num_key_value_heads",
                        use_head_dim=True):
    """Trusted per-token bytes; the keyword arguments reproduce two classic misreadings."""
    n_heads = config["num_attention_heads"]
    n_kv_heads = config.get(kv_heads_key, n_heads)
    head_dim = (config.get("head_dim") if use_head_dim else None) or config["hidden_size"] // n_heads
    return 2 * config["num_hidden_layers"] * n_kv_heads * head_dim * bytes_per_elem


def per_token_mistake(got, config, bytes_per_elem) -> str:
    """Name the usual mistake behind a wrong per-token size."""
    if not isinstance(got, (int, float)) or isinstance(got, bool):
        return "return a plain Python int"
    expected = reference_per_token(config, bytes_per_elem)
    mistakes = [
        ("used num_attention_heads (query heads) where the cache stores num_key_value_heads",
         reference_per_token(config, bytes_per_elem, kv_heads_key="num_attention_heads")),
        ("ignored the config's head_dim: it is not always hidden_size // num_attention_heads",
         reference_per_token(config, bytes_per_elem, use_head_dim=False)),
        ("forgot the factor 2: the cache holds keys AND values", expected // 2),
        ("counted bits instead of bytes", expected * 8),
    ]
    for cause, value in mistakes:
        if value != expected and got == value:
            return cause
    return ("per token: 2 x num_hidden_layers x num_key_value_heads (default: "
            "num_attention_heads) x head_dim (default: hidden_size // num_attention_heads) x "
            "bytes_per_elem")


def test_per_token_published(submission):
    published = [
        ("LLAMA2_7B_KV_BYTES_PER_TOKEN", "Llama-2-7B (MHA: 32 layers, 32 KV heads of 128, fp16)",
         LLAMA2_7B, 512 * KiB),
        ("LLAMA3_8B_KV_BYTES_PER_TOKEN", "Llama-3-8B (GQA: 32 layers, 8 KV heads of 128, bf16)",
         LLAMA3_8B, 128 * KiB),
        ("GEMMA_2B_KV_BYTES_PER_TOKEN", "Gemma-2B (MQA: 18 layers, 1 KV head of 256, bf16)",
         GEMMA_2B, 18 * KiB),
    ]
    for name, what, config, published_bytes in published:
        expected = reference_per_token(config, bytes_per_elem=2)
        assert expected == published_bytes, (  # guards this table itself, not the student
            f"lab bug: the {name} table gives {expected}, the published size is {published_bytes}"
        )
        got = getattr(submission, name)
        assert got == expected, (
            f"{name}, the per-token KV cache of {what}: expected {expected} bytes "
            f"({expected // KiB} KiB), got {got!r}; likely cause: "
            f"{per_token_mistake(got, config, 2)}"
        )


CONFIG_CASES = [
    (LLAMA2_7B, 2, "Llama-2-7B: no num_key_value_heads key, so plain MHA"),
    (LLAMA3_8B, 2, "Llama-3-8B: GQA with 8 KV heads"),
    (LLAMA2_70B, 2, "Llama-2-70B: GQA with 8 KV heads of 128"),
    (MISTRAL_7B, 2, "Mistral-7B as recent transformers save it: head_dim present but null"),
    (GEMMA_2B, 2, "Gemma-2B: MQA, one KV head"),
    (GEMMA_7B, 2, "Gemma-7B: head_dim 256 although hidden_size // num_attention_heads is 192"),
    (LLAMA3_8B, 1, "Llama-3-8B with an fp8 cache"),
    (LLAMA2_7B, 4, "Llama-2-7B with an fp32 cache"),
]


def test_bytes_from_hf_config(submission):
    for config, bytes_per_elem, what in CONFIG_CASES:
        expected = reference_per_token(config, bytes_per_elem)
        got = submission.kv_bytes_per_token(dict(config), bytes_per_elem=bytes_per_elem)
        assert got == expected, (
            f"{what}: kv_bytes_per_token(config, bytes_per_elem={bytes_per_elem}) expected "
            f"{expected} bytes, got {got!r}; likely cause: "
            f"{per_token_mistake(got, config, bytes_per_elem)}"
        )

