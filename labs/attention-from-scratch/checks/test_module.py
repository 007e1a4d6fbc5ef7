"""Checks of the student's MultiHeadSelfAttention against nn.MultiheadAttention with the same weights.

The reference runs here, in the trusted process. It is kept in train() mode: with dropout 0 that
changes nothing numerically, and it keeps torch off its fused inference fast path, which may zero
the outputs at padded positions instead of computing them. Outputs at padded query positions are
never graded: a module may compute them or zero them.
"""

import torch
import torch.nn.functional as F
from torch import nn

from grader.channel import SubmissionError
from grader.testing import assert_tensor_close, expect_tensor

MODULE_HINT = (
    "heads split with a plain view(B, n_heads, T, head_size) instead of view(B, T, n_heads, head_size)"
    ".transpose(1, 2), or merged back without transposing again; or out_proj not applied to the merged heads."
)
CAUSAL_HINT = "causal=True does not reach the attention: token i may attend tokens j <= i only."
PADDING_HINT = (
    "key_padding_mask used the wrong way round. It marks padding to IGNORE with True (nn.MultiheadAttention's "
    "convention), while your attention's mask=True means MAY attend: pass ~key_padding_mask, shaped "
    "(B, 1, 1, T) so it broadcasts over heads and queries."
)
GRADIENT_HINT = (
    "something in the forward pass cuts the autograd graph: .detach(), .data, .item(), a numpy round trip "
    "or torch.no_grad() inside it."
)


def _attention_note(submission, device):
    """A pointer to the attention function when it is the real culprit, else ''."""
    q, k, v = (torch.randn(2, 2, 4, 4, dtype=torch.float64, device=device) for _ in range(3))
    mask = torch.rand(2, 1, 4, 4, device=device) < 0.6
    mask[..., 0] = True
    lower = torch.ones(4, 4, dtype=torch.bool, device=device).tril()
    try:
        got = submission.scaled_dot_product_attention(q, k, v, mask=mask, causal=True)
        expected = F.scaled_dot_product_attention(q, k, v, attn_mask=mask & lower)
        works = isinstance(got, torch.Tensor) and got.shape == expected.shape and torch.allclose(got, expected)
    except SubmissionError:
        works = False
    if works:
        return ""
    return (
        "\nNote: your scaled_dot_product_attention does not match torch's yet (see its checks). If the module "
        "uses it, fix it first: this failure may be its fault."
    )


def _assert_close(submission, device, got, expected, **kwargs):
    """assert_tensor_close, plus the attention note when it fails."""
    try:
        assert_tensor_close(got, expected, **kwargs)
    except AssertionError as failure:
        raise AssertionError(f"{failure}{_attention_note(submission, device)}") from None


def _reference_pair(submission, device, dtype, d_model, n_heads):
    """A trusted nn.MultiheadAttention and the student's module holding the same weights."""
    reference = nn.MultiheadAttention(d_model, n_heads, bias=True, batch_first=True)
    reference = reference.to(device=device, dtype=dtype).train()
    w, b = reference.in_proj_weight.detach(), reference.in_proj_bias.detach()  # (3C, C), (3C,): q, k, v stacked
    state = {}
    for i, name in enumerate(("q_proj", "k_proj", "v_proj")):
        state[f"{name}.weight"] = w[i * d_model : (i + 1) * d_model].clone()
        state[f"{name}.bias"] = b[i * d_model : (i + 1) * d_model].clone()
    state["out_proj.weight"] = reference.out_proj.weight.detach().clone()
    state["out_proj.bias"] = reference.out_proj.bias.detach().clone()

    what = f"MultiHeadSelfAttention({d_model}, {n_heads})"
    try:
        theirs = submission.MultiHeadSelfAttention(d_model, n_heads)
        theirs.to(device=device, dtype=dtype)
        # strict=False so extra buffers of the student's (a cached mask, say) do not fail the load;
        # what matters is checked right below: every projection holds the reference weights.
        theirs.load_state_dict(state, strict=False)
        loaded = theirs.state_dict()  # one round trip for every tensor
    except SubmissionError as error:
        raise AssertionError(
            f"could not load nn.MultiheadAttention's weights into {what}: {error.type_name}: {error.message}. "
            "Expected submodules q_proj, k_proj, v_proj and out_proj, each nn.Linear(d_model, d_model) "
            "with a bias (bias=True is the default)."
        ) from None
    for key, tensor in state.items():
        assert key in loaded, (
            f"{what} has no parameter {key!r}: expected submodules q_proj, k_proj, v_proj and out_proj, each "
            f"nn.Linear(d_model, d_model) with a bias; got parameters and buffers {sorted(loaded)}."
        )
        expect_tensor(loaded[key], shape=tuple(tensor.shape), dtype=dtype, what=f"{what}.{key}")
        assert torch.equal(loaded[key].detach(), tensor), (
            f"{what}.{key}: expected the weights just loaded with load_state_dict, got other values. Likely "
            "cause: the projections are not plain nn.Linear submodules named as in the contract."
        )
    return reference, theirs


def _causal_blocked(T, device):
    """nn.MultiheadAttention's attn_mask: True = NOT allowed (the opposite of torch's functional one)."""
    return torch.ones(T, T, dtype=torch.bool, device=device).triu(diagonal=1)  # (T, T)


def _padding(B, T, device):
    """(B, T) bool, True = padding; position 0 is never padded, so every query keeps a key."""
    pad = torch.rand(B, T, device=device) < 0.4
    pad[:, 0] = False
    return pad


def test_module_matches_torch(submission, device):
    # (dtype, B, T, d_model, n_heads)
    for dtype, B, T, d_model, n_heads in (
        (torch.float32, 2, 5, 16, 4),
        (torch.float64, 3, 7, 32, 2),
        (torch.float64, 2, 4, 8, 8),  # head_size 1
        (torch.float64, 1, 6, 12, 1),  # one head: a plain view happens to be right here
    ):
        reference, theirs = _reference_pair(submission, device, dtype, d_model, n_heads)
        x = torch.randn(B, T, d_model, dtype=dtype, device=device)
        got = theirs(x)
        expected, _ = reference(x, x, x, need_weights=False)
        what = f"MultiHeadSelfAttention({d_model}, {n_heads}) on x {tuple(x.shape)} {str(dtype).replace('torch.', '')}"
        expect_tensor(got, shape=(B, T, d_model), dtype=dtype, what=what)
        _assert_close(submission, device, got, expected, what=what, hint=MODULE_HINT)


def test_module_masks(submission, device):
    B, T, d_model, n_heads = 3, 6, 16, 4
    for dtype in (torch.float32, torch.float64):
        reference, theirs = _reference_pair(submission, device, dtype, d_model, n_heads)
        x = torch.randn(B, T, d_model, dtype=dtype, device=device)
        pad = _padding(B, T, device)
        real = ~pad[:, :, None]  # (B, T, 1): outputs at padded query positions are not graded
        name = str(dtype).replace("torch.", "")
        blocked = _causal_blocked(T, device)

        expected, _ = reference(x, x, x, need_weights=False)
        _assert_close(
            submission,
            device,
            theirs(x),
            expected,
            what=f"forward(x) without masks in {name}",
            hint="the module is already off without masks (see module_matches_torch): " + MODULE_HINT,
        )
        expected, _ = reference(x, x, x, attn_mask=blocked, need_weights=False)
        _assert_close(
            submission,
            device,
            theirs(x, causal=True),
            expected,
            what=f"forward(x, causal=True) in {name}",
            hint=CAUSAL_HINT,
        )
        expected, _ = reference(x, x, x, key_padding_mask=pad, need_weights=False)
        _assert_close(
            submission,
            device,
            theirs(x, key_padding_mask=pad),
            expected,
            mask=real,
            what=f"forward(x, key_padding_mask=...) at the non-padded positions, in {name}",
            hint=PADDING_HINT,
        )
        expected, _ = reference(x, x, x, attn_mask=blocked, key_padding_mask=pad, need_weights=False)
        _assert_close(
            submission,
            device,
            theirs(x, causal=True, key_padding_mask=pad),
            expected,
            mask=real,
            what=f"forward(x, causal=True, key_padding_mask=...) at the non-padded positions, in {name}",
            hint="only one of the two masks reaches the attention: a key must be real (not padding) AND "
            "not in the future.",
        )

    # Properties, independent of torch: the future and the padding never reach a real token's output.
    x = torch.randn(B, T, d_model, dtype=torch.float64, device=device)
    before = theirs(x, causal=True)
    x_future = x.clone()
    x_future[:, 3:] = torch.randn_like(x_future[:, 3:]) * 10
    _assert_close(
        submission,
        device,
        theirs(x_future, causal=True)[:, :3],
        before[:, :3],
        what="causal outputs at tokens 0..2 after changing only tokens 3 and later (compared with before)",
        hint="the future leaked into the past: with causal=True token i may attend tokens j <= i only.",
    )
    before = theirs(x, key_padding_mask=pad)
    x_padding = x.clone()
    x_padding[pad] = torch.randn_like(x_padding[pad]) * 10
    _assert_close(
        submission,
        device,
        theirs(x_padding, key_padding_mask=pad),
        before,
        mask=real,
        what="outputs at real tokens after changing only the padding tokens (compared with before)",
        hint="padding leaked into real tokens: " + PADDING_HINT,
    )


def test_module_gradients(submission, device):
    B, T, d_model, n_heads = 2, 5, 16, 4
    dtype = torch.float64  # exact enough that any gradient difference is a real one
    reference, theirs = _reference_pair(submission, device, dtype, d_model, n_heads)
    x = torch.randn(B, T, d_model, dtype=dtype, device=device)
    pad = _padding(B, T, device)
    c = d_model
    for label, kwargs, ref_kwargs in (
        ("no masks", {}, {}),
        (
            "causal=True with padding",
            {"causal": True, "key_padding_mask": pad},
            {"attn_mask": _causal_blocked(T, device), "key_padding_mask": pad},
        ),
    ):
        real = ~pad[:, :, None] if kwargs else torch.ones(B, T, 1, dtype=torch.bool, device=device)
        grad_output = torch.randn(B, T, d_model, dtype=dtype, device=device)
        grad_output = grad_output * real  # padded positions are not graded, so neither are their gradients

        reference.zero_grad(set_to_none=True)
        x_ref = x.clone().requires_grad_(True)
        expected, _ = reference(x_ref, x_ref, x_ref, need_weights=False, **ref_kwargs)
        expected.backward(grad_output)
        expected_param_grads = {
            "q_proj.weight": reference.in_proj_weight.grad[:c],
            "k_proj.weight": reference.in_proj_weight.grad[c : 2 * c],
            "v_proj.weight": reference.in_proj_weight.grad[2 * c :],
            "q_proj.bias": reference.in_proj_bias.grad[:c],
            "k_proj.bias": reference.in_proj_bias.grad[c : 2 * c],
            "v_proj.bias": reference.in_proj_bias.grad[2 * c :],
            "out_proj.weight": reference.out_proj.weight.grad,
            "out_proj.bias": reference.out_proj.bias.grad,
        }

        result = submission.backward(theirs, x, grad_output=grad_output, **kwargs)
        # Gradients of a wrong forward pass are wrong too: say so first.
        _assert_close(
            submission,
            device,
            result["output"],
            expected.detach(),
            mask=real,
            what=f"forward output before the gradients ({label})",
            hint="the forward pass is off (see module_matches_torch and module_masks): " + MODULE_HINT,
        )
        input_grad = result["grads"][0]
        assert input_grad is not None, (
            f"gradient with respect to x ({label}): expected a tensor of shape {tuple(x.shape)}, got None. "
            f"Likely cause: {GRADIENT_HINT}"
        )
        _assert_close(
            submission,
            device,
            input_grad,
            x_ref.grad,
            what=f"gradient with respect to x ({label})",
            hint=GRADIENT_HINT,
        )
        param_grads = result["param_grads"]
        for name, expected_grad in expected_param_grads.items():
            got = param_grads.get(name)
            assert got is not None, (
                f"gradient of {name} ({label}): expected a tensor of shape {tuple(expected_grad.shape)}, got "
                f"{'no such parameter' if name not in param_grads else 'None'}. Likely cause: "
                + ("the merged heads never go through out_proj." if name.startswith("out_proj") else GRADIENT_HINT)
            )
            _assert_close(
                submission,
                device,
                got,
                expected_grad,
                what=f"gradient of {name} ({label})",
                hint=GRADIENT_HINT,
            )
