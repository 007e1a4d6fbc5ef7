"""Checks of each layer's forward and backward against torch and autograd, computed here (trusted).

Every backward function gets the forward's inputs and an arbitrary grad_out; the reference is the
gradient autograd gives for the scalar (y * grad_out).sum(), whose gradient with respect to y is
grad_out. Shapes are never square where a transpose could hide, dtypes are float64 (any difference
is a real one) and float32 (the result must keep the input's dtype).
"""

import torch
import torch.nn.functional as F

from grader.testing import assert_tensor_close, expect_tensor

DTYPES = (torch.float64, torch.float32)

# (N, in, out): wide, narrow, a batch of one, and a square layer where x.T @ g has the right shape.
LINEAR_SHAPES = ((4, 3, 5), (6, 7, 2), (1, 5, 3), (5, 4, 4))

LINEAR_HINTS = {
    "grad_x": "grad_x = grad_out @ weight, (N, out) @ (out, in) -> (N, in); weight is stored (out, in) as in "
    "nn.Linear, so no transpose here.",
    "grad_weight": "grad_weight = grad_out.T @ x, (out, N) @ (N, in) -> (out, in). x.T @ grad_out is its transpose "
    "(in, out); dividing by N averages a second time: the 1/N of the mean loss is already inside grad_out.",
    "grad_bias": "grad_bias = grad_out.sum(dim=0), shape (out,): the bias is added to each of the N rows, so the "
    "gradients of all N copies add up. Not grad_out itself (N, out), not one row, not the mean.",
}


def _name(dtype):
    return str(dtype).replace("torch.", "")


def _autograd(fn, inputs, grad_out):
    """fn(*inputs) and the gradients autograd gives each input for the upstream gradient grad_out."""
    leaves = [t.detach().clone().requires_grad_(True) for t in inputs]
    out = fn(*leaves)
    out.backward(grad_out)
    return out.detach(), [leaf.grad for leaf in leaves]


def _as_tuple(got, count, what):
    assert isinstance(got, (tuple, list)) and len(got) == count, (
        f"{what}: expected a tuple of {count} tensors, got "
        f"{type(got).__name__ if not isinstance(got, (tuple, list)) else f'{len(got)} values'}."
    )
    return tuple(got)


def test_linear_matches_autograd(submission, device):
    for dtype in DTYPES:
        for N, n_in, n_out in LINEAR_SHAPES:
            x = torch.randn(N, n_in, dtype=dtype, device=device)
            weight = torch.randn(n_out, n_in, dtype=dtype, device=device)
            bias = torch.randn(n_out, dtype=dtype, device=device)
            grad_out = torch.randn(N, n_out, dtype=dtype, device=device)
            shapes = f"x ({N}, {n_in}), weight ({n_out}, {n_in}), {_name(dtype)}"

            expected_y, expected_grads = _autograd(F.linear, (x, weight, bias), grad_out)
            assert_tensor_close(
                submission.linear_forward(x, weight, bias),
                expected_y,
                what=f"linear_forward({shapes})",
                hint="y = x @ weight.T + bias: weight is stored (out, in), as in nn.Linear.",
            )
            got = _as_tuple(submission.linear_backward(grad_out, x, weight), 3, f"linear_backward({shapes})")
            for name, got_grad, expected_grad, shape in zip(
                ("grad_x", "grad_weight", "grad_bias"),
                got,
                expected_grads,
                ((N, n_in), (n_out, n_in), (n_out,)),
                strict=True,
            ):
                what = f"{name} of linear_backward({shapes})"
                expect_tensor(got_grad, shape=shape, dtype=dtype, what=what, hint=LINEAR_HINTS[name])
                assert_tensor_close(got_grad, expected_grad, what=what, hint=LINEAR_HINTS[name])


def test_relu_matches_autograd(submission, device):
    for dtype in DTYPES:
        x = torch.randn(6, 9, dtype=dtype, device=device) * 2  # never exactly 0, where the slope is a convention
        grad_out = torch.randn(6, 9, dtype=dtype, device=device)  # signs independent of x's
        expected_y, (expected_grad,) = _autograd(F.relu, (x,), grad_out)
        assert_tensor_close(
            submission.relu_forward(x),
            expected_y,
            what=f"relu_forward on a (6, 9) {_name(dtype)} tensor",
            hint="relu is max(x, 0) elementwise: x.clamp(min=0).",
        )
        got = submission.relu_backward(grad_out, x)
        what = f"relu_backward on a (6, 9) {_name(dtype)} tensor"
        expect_tensor(got, shape=(6, 9), dtype=dtype, what=what)
        assert_tensor_close(
            got,
            expected_grad,
            what=what,
            hint="the slope of ReLU is 1 where the forward's input x > 0 and 0 elsewhere, so grad_x = grad_out * "
            "(x > 0). The mask comes from x, not from the sign of grad_out.",
        )


def test_gelu_matches_autograd(submission, device):
    for dtype in DTYPES:
        # A grid over [-6, 6] (the tails, where Phi saturates, and the bend around 0) plus random points.
        x = torch.cat(
            [torch.linspace(-6, 6, 49, dtype=dtype, device=device), torch.randn(47, dtype=dtype, device=device) * 2]
        ).reshape(8, 12)
        grad_out = torch.randn(8, 12, dtype=dtype, device=device)
        expected_y, (expected_grad,) = _autograd(F.gelu, (x,), grad_out)
        assert_tensor_close(
            submission.gelu_forward(x),
            expected_y,
            what=f"gelu_forward on values in [-6, 6], {_name(dtype)}",
            hint="the exact GELU is x * Phi(x) with Phi(x) = (1 + erf(x / sqrt(2))) / 2 (F.gelu's default). The "
            "tanh approximation differs by up to ~5e-4, which is far more than the tolerance.",
        )
        got = submission.gelu_backward(grad_out, x)
        what = f"gelu_backward on values in [-6, 6], {_name(dtype)}"
        expect_tensor(got, shape=(8, 12), dtype=dtype, what=what)
        assert_tensor_close(
            got,
            expected_grad,
            what=what,
            hint="by the product rule, d/dx [x * Phi(x)] = Phi(x) + x * phi(x), with phi(x) = exp(-x**2 / 2) / "
            "sqrt(2 * pi). Forgetting the x * phi(x) term is the usual slip; then multiply by grad_out.",
        )


def _ce_inputs(N, C, dtype, device, scale=3.0):
    logits = torch.randn(N, C, dtype=dtype, device=device) * scale
    targets = torch.randint(0, C, (N,), device=device)
    return logits, targets


# (N, C, dtype, logit scale): ordinary logits, a batch of one, more classes than examples, and
# logits around 1e3 in float32, where exp() alone overflows to inf.
CE_CASES = (
    (8, 5, torch.float64, 3.0),
    (1, 4, torch.float64, 3.0),
    (3, 10, torch.float32, 3.0),
    (6, 4, torch.float32, 1e3),
)


def _ce_label(N, C, dtype, scale):
    size = "around 1e3" if scale > 100 else "of ordinary size"
    return f"logits ({N}, {C}) {_name(dtype)} {size}"


def test_cross_entropy_loss_matches_torch(submission, device):
    for N, C, dtype, scale in CE_CASES:
        logits, targets = _ce_inputs(N, C, dtype, device, scale)
        expected = F.cross_entropy(logits, targets)
        got = submission.softmax_cross_entropy(logits, targets)
        what = f"softmax_cross_entropy({_ce_label(N, C, dtype, scale)})"
        if isinstance(got, (int, float)) and not isinstance(got, bool):
            got = torch.tensor(float(got), dtype=dtype, device=device)  # a plain number is a fine scalar too
        expect_tensor(
            got,
            shape=(),
            what=what,
            hint="expected one number, the mean over the batch of the per-example losses (F.cross_entropy's "
            "default reduction='mean').",
        )
        assert_tensor_close(
            got.to(dtype),  # the value is graded, not the dtype of one number
            expected,
            what=what,
            hint="each example's loss is logsumexp(logits[n]) - logits[n, targets[n]], and the batch's loss is their "
            "mean. For large logits subtract each row's maximum before exp(): exp(1000.0) is inf.",
        )


def test_cross_entropy_backward_matches_autograd(submission, device):
    for N, C, dtype, scale in CE_CASES:
        logits, targets = _ce_inputs(N, C, dtype, device, scale)
        leaf = logits.clone().requires_grad_(True)
        F.cross_entropy(leaf, targets).backward()
        got = submission.softmax_cross_entropy_backward(logits, targets)
        what = f"softmax_cross_entropy_backward({_ce_label(N, C, dtype, scale)})"
        expect_tensor(got, shape=(N, C), dtype=dtype, what=what)
        bad = int((~torch.isfinite(got)).sum())
        assert bad == 0, (
            f"{what}: expected finite gradients, got {bad} nan/inf values out of {got.numel()}. Likely cause: "
            "exp() of a logit near 1e3 overflows to inf, and inf / inf is nan. Subtract each row's maximum "
            "before exp(): the softmax does not change."
        )
        # Each row of (softmax - one_hot) / N sums to (1 - 1) / N = 0, whatever the logits.
        worst = float(got.sum(dim=1).abs().max())
        assert worst < (1e-5 if dtype == torch.float32 else 1e-10), (
            f"{what}: expected every row of the gradient to sum to 0 (a softmax row sums to 1, and so does a "
            f"one-hot row), got a row summing to {worst:.3g}. Likely cause: the one-hot term is missing, so the "
            "target class is never pulled up: dL/dlogits = (softmax(logits) - one_hot(targets)) / N."
        )
        assert_tensor_close(
            got,
            leaf.grad,
            what=what,
            hint="the loss is the MEAN over the batch, so the gradient is (softmax(logits) - one_hot(targets)) / N: "
            "divide by N exactly once. Without it every gradient is N times too large.",
        )
