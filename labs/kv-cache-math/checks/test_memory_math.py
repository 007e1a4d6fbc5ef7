"""Checks of the memory formulas: kv_cache_bytes and max_concurrent_sequences."""

from __future__ import annotations

KiB, GiB = 2**10, 2**30


def reference_kv_cache_bytes(n_layers, n_kv_heads, head_dim, seq_len, batch_size=1,
                             bytes_per_elem=2):
    """Trusted formula: one key and one value vector per KV head, per layer, per token."""
    return 2 * n_layers * n_kv_heads * head_dim * seq_len * batch_size * bytes_per_elem


def reference_max_concurrent(gpu_bytes, weight_bytes, n_layers, n_kv_heads, head_dim, seq_len,
                             bytes_per_elem=2, reserved_bytes=0):
    per_sequence = reference_kv_cache_bytes(n_layers, n_kv_heads, head_dim, seq_len,
                                            bytes_per_elem=bytes_per_elem)
    return max(0, (gpu_bytes - weight_bytes - reserved_bytes) // per_sequence)


def is_whole_number(value) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and float(value).is_integer())


def likely_cause(got, expected) -> str:
    """Name the usual mistake behind a wrong byte count, from the ratio got / expected."""
    if not isinstance(got, (int, float)) or isinstance(got, bool) or not expected:
        return "return a plain Python int"
    ratio = got / expected
    causes = {
        0.5: "forgot the factor 2: the cache holds keys AND values",
        8.0: "counted bits instead of bytes (bytes_per_elem is already in bytes)",
        4.0: "counted bits and forgot the factor 2 for K and V",
    }
    for known, cause in causes.items():
        if abs(ratio - known) < 1e-9:
            return cause
    return ("the count must be 2 x n_layers x n_kv_heads x head_dim x seq_len x batch_size x "
            "bytes_per_elem")


# (n_layers, n_kv_heads, head_dim, seq_len, batch_size, bytes_per_elem, what)
FORMULA_CASES = [
    (1, 1, 1, 1, 1, 1, "the smallest cache: one layer, one head of width 1, one token, 1 byte"),
    (12, 12, 64, 1024, 1, 2, "GPT-2 small, 1024 tokens, fp16"),
    (32, 32, 128, 4096, 1, 2, "Llama-2-7B (MHA), 4096 tokens, fp16"),
    (32, 8, 128, 8192, 4, 2, "Llama-3-8B (GQA), 4 sequences of 8192 tokens, bf16"),
    (80, 8, 128, 1, 1, 1, "Llama-2-70B (GQA), one token, fp8"),
    (18, 1, 256, 1000, 3, 4, "Gemma-2B (MQA), 3 sequences of 1000 tokens, fp32"),
    (2, 2, 16, 0, 5, 2, "an empty sequence: nothing cached yet"),
    (3, 5, 7, 11, 13, 4, "odd sizes everywhere (no factor hides another)"),
]


def test_kv_cache_bytes_formula(submission):
    for n_layers, n_kv_heads, head_dim, seq_len, batch_size, bytes_per_elem, what in FORMULA_CASES:
        expected = reference_kv_cache_bytes(n_layers, n_kv_heads, head_dim, seq_len, batch_size,
                                            bytes_per_elem)
        got = submission.kv_cache_bytes(n_layers, n_kv_heads, head_dim, seq_len,
                                        batch_size=batch_size, bytes_per_elem=bytes_per_elem)
        call = (f"kv_cache_bytes({n_layers}, {n_kv_heads}, {head_dim}, {seq_len}, "
                f"batch_size={batch_size}, bytes_per_elem={bytes_per_elem})")
        assert is_whole_number(got) and got == expected, (
            f"{what}: {call} expected {expected} bytes, got {got!r}; "
            f"likely cause: {likely_cause(got, expected)}"
        )

    # The defaults: one sequence, 2 bytes per number (fp16/bf16).
    expected = reference_kv_cache_bytes(32, 8, 128, 100)
    got = submission.kv_cache_bytes(32, 8, 128, 100)
    assert is_whole_number(got) and got == expected, (
        f"kv_cache_bytes(32, 8, 128, 100) with the default batch_size=1 and bytes_per_elem=2: "
        f"expected {expected} bytes, got {got!r}; likely cause: {likely_cause(got, expected)}"
    )


def concurrency_mistake(got, gpu, weights, reserved, per_sequence) -> str:
    """Name the usual mistake that gives `got` sequences, by recomputing each mistake."""
    if not is_whole_number(got):
        return "return a whole number of sequences (an int), e.g. with // not /"
    if got < 0:
        return "clamp at 0: when the weights and reserve take everything, nothing fits"
    free = gpu - weights - reserved

    def floor_fit(free_bytes, per):
        return max(0, free_bytes // per)

    mistakes = [
        ("reserved_bytes was not subtracted", floor_fit(gpu - weights, per_sequence)),
        ("forgot the factor 2 for K and V in the per-sequence bytes",
         floor_fit(free, per_sequence // 2)),
        ("counted bits instead of bytes in the per-sequence size",
         floor_fit(free, per_sequence * 8)),
        ("rounded up: a sequence that only partly fits does not fit (use floor)",
         max(0, -(-free // per_sequence))),
        ("rounded to nearest: a sequence that only partly fits does not fit (use floor)",
         max(0, round(free / per_sequence))),
    ]
    expected = floor_fit(free, per_sequence)
    for cause, value in mistakes:
        if value != expected and got == value:
            return cause
    return ("free bytes = gpu_bytes - weight_bytes - reserved_bytes (0 sequences when <= 0), "
            "divided by kv_cache_bytes of one sequence, rounded down")


# (gpu_bytes, weight_bytes, n_layers, n_kv_heads, head_dim, seq_len, bytes_per_elem,
#  reserved_bytes, what)
CONCURRENCY_CASES = [
    (80 * GiB, 16 * GiB, 32, 8, 128, 8192, 2, 0,
     "Llama-3-8B, 8192-token sequences (1 GiB each), 64 GiB free"),
    (80 * GiB, 16 * GiB, 32, 8, 128, 8192, 2, 8 * GiB,
     "the same with an 8 GiB reserve"),
    (80 * 10**9, 13_480_000_000, 32, 32, 128, 4096, 2, 8 * 10**9,
     "Llama-2-7B, 4096-token sequences, decimal GB: the free space is not a whole number of sequences"),
    (80 * GiB, 16 * GiB, 32, 8, 128, 8192, 2, 63 * GiB,
     "a reserve that leaves exactly one sequence's worth"),
    (80 * GiB, 16 * GiB, 32, 8, 128, 8192, 2, 64 * GiB,
     "a reserve that takes everything the weights leave"),
    (24 * GiB, 16 * GiB, 32, 32, 128, 32768, 2, 0,
     "nothing fits: one 32768-token Llama-2-7B sequence needs 16 GiB, 8 GiB are free"),
    (16 * GiB, 26 * GiB, 32, 32, 128, 1024, 2, 0,
     "the weights alone do not fit on the GPU"),
    (8 * GiB, 7 * GiB, 18, 1, 256, 2048, 1, 0,
     "Gemma-2B (MQA) with an fp8 cache, 1 GiB free"),
]


def test_max_concurrent_sequences_fit(submission):
    for (gpu, weights, n_layers, n_kv_heads, head_dim, seq_len, bytes_per_elem, reserved,
         what) in CONCURRENCY_CASES:
        expected = reference_max_concurrent(gpu, weights, n_layers, n_kv_heads, head_dim, seq_len,
                                            bytes_per_elem, reserved)
        got = submission.max_concurrent_sequences(gpu, weights, n_layers, n_kv_heads, head_dim,
                                                  seq_len, bytes_per_elem=bytes_per_elem,
                                                  reserved_bytes=reserved)
        if is_whole_number(got) and got == expected:
            continue
        per_sequence = reference_kv_cache_bytes(n_layers, n_kv_heads, head_dim, seq_len,
                                                bytes_per_elem=bytes_per_elem)
        free = gpu - weights - reserved
        cause = concurrency_mistake(got, gpu, weights, reserved, per_sequence)
        raise AssertionError(
            f"{what}: max_concurrent_sequences(gpu_bytes={gpu}, weight_bytes={weights}, "
            f"{n_layers}, {n_kv_heads}, {head_dim}, {seq_len}, bytes_per_elem={bytes_per_elem}, "
            f"reserved_bytes={reserved}) expected {expected} (free {free} bytes, "
            f"{per_sequence} bytes per sequence), got {got!r}; likely cause: {cause}"
        )
