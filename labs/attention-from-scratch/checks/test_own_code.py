"""The attention is the student's own: it works, and the code never reaches for torch's attention.

The search reads the submission's source here, in the trusted process (an AST search that also
sees names inside strings), so nothing the notebook does at run time can switch it off.
"""

import torch
import torch.nn.functional as F

from grader.testing import assert_tensor_close, find_calls

# What torch offers that would do the work. A dotted name matches only an attribute access or an
# import of its last part, so the student's own function called scaled_dot_product_attention is
# fine while F.scaled_dot_product_attention (or torch._C._nn.scaled_dot_product_attention) is not.
LIBRARY_ATTENTION = (
    "F.scaled_dot_product_attention",
    "F.multi_head_attention_forward",
    "nn.MultiheadAttention",
    "nn.Transformer",  # the layers below all contain an nn.MultiheadAttention
    "nn.TransformerEncoderLayer",
    "nn.TransformerDecoderLayer",
    "nn.TransformerEncoder",
    "nn.TransformerDecoder",
    # the fused kernels behind them
    "torch._native_multi_head_attention",
    "torch._scaled_dot_product_attention_math",
    "torch._scaled_dot_product_flash_attention",
    "torch._scaled_dot_product_flash_attention_for_cpu",
    "torch._scaled_dot_product_efficient_attention",
    "torch._scaled_dot_product_cudnn_attention",
)


def test_no_library_attention(submission, submission_source, device):
    # No points for an empty notebook: both graded pieces must run and compute attention first.
    q, k, v = (
        torch.randn(2, 3, 8, device=device),
        torch.randn(2, 4, 8, device=device),
        torch.randn(2, 4, 5, device=device),
    )
    assert_tensor_close(
        submission.scaled_dot_product_attention(q, k, v),
        F.scaled_dot_product_attention(q, k, v),
        what="scaled_dot_product_attention on a small input (this check needs a working implementation)",
        hint="the attention function is not finished yet: see the scaled_dot_product_attention checks.",
    )
    module = submission.MultiHeadSelfAttention(8, 2)
    module.to(device)
    out = module(torch.randn(2, 3, 8, device=device))
    assert tuple(out.shape) == (2, 3, 8), (
        f"MultiHeadSelfAttention(8, 2) on x (2, 3, 8): expected an output of shape (2, 3, 8), got "
        f"{tuple(out.shape)} (this check needs a working module)"
    )

    found = find_calls(submission_source, list(LIBRARY_ATTENTION))
    assert not found, (
        f"expected attention written from scratch, but the code uses torch's own attention: {found}. "
        "Write the scores, the mask, the softmax and the weighted sum yourself, and leave these names "
        "out of your code altogether (strings included)."
    )
