"""Checks of the student's scaled_dot_product_attention against torch's own, computed here (trusted)."""

import torch
import torch.nn.functional as F

from grader.testing import assert_tensor_close, expect_tensor

DTYPES = (torch.float32, torch.float64)

# (leading batch dims, Lq, Lk, d, dv): each shape catches one way of getting an axis wrong.
SHAPES = (
    ((2,), 5, 5, 8, 8),  # plain square self-attention
    ((2, 3), 4, 7, 8, 6),  # heads as an extra batch dim; Lq != Lk; d != dv
    ((), 6, 3, 4, 5),  # no batch dim at all; more queries than keys
    ((2, 1, 3), 3, 5, 16, 4),  # three leading dims
)

AXIS_HINT = (
    "scores not divided by sqrt(d) with d = q.size(-1); a softmax over the wrong dimension (it must "
    "normalise over the keys, dim=-1, so each query's weights sum to 1); or k transposed with .T or "
    "transpose(1, 2) instead of transpose(-2, -1), which breaks as soon as there are extra batch dimensions."
)


def _qkv(batch, Lq, Lk, d, dv, *, dtype, device, scale=1.0):
    q = torch.randn(*batch, Lq, d, dtype=dtype, device=device) * scale  # (..., Lq, d)
    k = torch.randn(*batch, Lk, d, dtype=dtype, device=device) * scale  # (..., Lk, d)
    v = torch.randn(*batch, Lk, dv, dtype=dtype, device=device)  # (..., Lk, dv)
    return q, k, v


def _describe(q, k, v):
    return f"q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}, {str(q.dtype).replace('torch.', '')}"


def test_sdpa_matches_torch(submission, device):
    for dtype in DTYPES:
        for batch, Lq, Lk, d, dv in SHAPES:
            q, k, v = _qkv(batch, Lq, Lk, d, dv, dtype=dtype, device=device)
            got = submission.scaled_dot_product_attention(q, k, v)
            what = f"scaled_dot_product_attention({_describe(q, k, v)})"
            expect_tensor(got, shape=(*batch, Lq, dv), dtype=dtype, what=what)
            assert_tensor_close(got, F.scaled_dot_product_attention(q, k, v), what=what, hint=AXIS_HINT)


def test_sdpa_attend_mask(submission, device):
    q, k, v = _qkv((2, 3), 5, 7, 8, 6, dtype=torch.float64, device=device)
    # A full (Lq, Lk) mask, one per batch shared by heads, and a key-only mask per head.
    for mask_shape in ((5, 7), (2, 1, 5, 7), (2, 3, 1, 7)):
        mask = torch.rand(mask_shape, device=device) < 0.6  # True = may attend
        mask[..., 0] = True  # every query keeps a key: rows with none are not graded
        got = submission.scaled_dot_product_attention(q, k, v, mask=mask)
        expected = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        assert_tensor_close(
            got,
            expected,
            what=f"attention with a boolean mask of shape {tuple(mask.shape)} ({_describe(q, k, v)})",
            hint="the mask is read the wrong way round, or reshaped. mask=True means 'may attend' (torch's "
            "functional convention): fill the scores with -inf where the mask is False "
            "(masked_fill(~mask, float('-inf'))), and let it broadcast against the scores (..., Lq, Lk) as it is.",
        )


def test_sdpa_causal(submission, device):
    # The property first: rewriting keys and values after position t never changes outputs <= t.
    q, k, v = _qkv((2, 3), 6, 6, 8, 8, dtype=torch.float64, device=device)
    before = submission.scaled_dot_product_attention(q, k, v, causal=True)
    for t in (0, 2, 4):
        k2, v2 = k.clone(), v.clone()
        k2[..., t + 1 :, :] = torch.randn_like(k2[..., t + 1 :, :]) * 10
        v2[..., t + 1 :, :] = torch.randn_like(v2[..., t + 1 :, :]) * 10
        after = submission.scaled_dot_product_attention(q, k2, v2, causal=True)
        assert_tensor_close(
            after[..., : t + 1, :],
            before[..., : t + 1, :],
            what=f"causal outputs at positions 0..{t} after changing only keys/values after position {t}",
            hint="the future leaked into the past. With causal=True query i may attend keys j <= i only: "
            "mask the strictly upper triangle (j > i), e.g. torch.ones(Lq, Lk, dtype=torch.bool).triu(1), "
            "not the lower one.",
        )
    # Then agreement with torch, including Lq != Lk, where torch aligns the triangle top-left.
    for Lq, Lk in ((6, 6), (4, 7), (7, 4)):
        q, k, v = _qkv((2, 3), Lq, Lk, 8, 5, dtype=torch.float64, device=device)
        got = submission.scaled_dot_product_attention(q, k, v, causal=True)
        assert_tensor_close(
            got,
            F.scaled_dot_product_attention(q, k, v, is_causal=True),
            what=f"causal attention with Lq={Lq}, Lk={Lk}",
            hint="the causal triangle is built from one length, or aligned to the wrong corner. Query i attends "
            "keys j <= i, aligned top-left even when Lq != Lk (torch's convention): build the (Lq, Lk) mask "
            "from both lengths, with triu(diagonal=1).",
        )


def test_sdpa_mask_with_causal(submission, device):
    q, k, v = _qkv((2, 3), 6, 6, 8, 4, dtype=torch.float64, device=device)
    mask = torch.rand(2, 1, 6, 6, device=device) < 0.5  # True = may attend
    mask |= torch.eye(6, dtype=torch.bool, device=device)  # each query keeps itself, which causal allows
    lower = torch.ones(6, 6, dtype=torch.bool, device=device).tril()
    got = submission.scaled_dot_product_attention(q, k, v, mask=mask, causal=True)
    assert_tensor_close(
        got,
        F.scaled_dot_product_attention(q, k, v, attn_mask=mask & lower),
        what="attention with both mask= and causal=True",
        hint="only one of the two masks is applied. A key must pass both: allowed by the mask AND not in the "
        "future. Apply both (not one in an if/elif); combine 'may attend' masks with &, never with |.",
    )


def test_sdpa_numerically_stable(submission, device):
    # q and k entries around 100 give scores q.k / sqrt(d) of magnitude around 1e4.
    q, k, v = _qkv((2, 2), 6, 6, 8, 4, dtype=torch.float32, device=device, scale=100.0)
    scores = q @ k.transpose(-2, -1) / 8**0.5
    assert scores.abs().amax() > 5e3, "internal: the stability inputs should have scores near 1e4"
    cases = (
        ("no mask", {}, {}),
        ("causal=True", {"causal": True}, {"is_causal": True}),
    )
    for label, theirs, torchs in cases:
        got = submission.scaled_dot_product_attention(q, k, v, **theirs)
        what = f"attention with scores around 1e4 in float32 ({label})"
        expect_tensor(got, shape=(2, 2, 6, 4), dtype=torch.float32, what=what)
        bad = (~torch.isfinite(got)).sum().item()
        assert bad == 0, (
            f"{what}: expected finite outputs, got {bad} nan/inf values out of {got.numel()}. "
            "Likely cause: exp() of a score near 1e4 overflows to inf, and inf / inf is nan. Subtract each "
            "row's maximum before exp() (softmax does not change), or use torch.softmax, which does it for you."
        )
        # Near-one-hot weights: allow float32 rounding of scores this large to move a little weight.
        assert_tensor_close(
            got,
            F.scaled_dot_product_attention(q, k, v, **torchs),
            what=what,
            hint="the maximum is taken before masking, or over the wrong axis: subtract each row's maximum of "
            "the masked scores (amax(dim=-1, keepdim=True)) before exp(), then divide by the row sum.",
            rtol=1e-3,
            atol=1e-3,
        )
