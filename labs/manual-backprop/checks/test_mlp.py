"""Checks of the student's 2-layer MLP gradients: against autograd, and against their own loss.

The first check builds the same network here with torch and autograd (trusted). The second needs
no torch reference at all: moving one parameter by +-eps along a random direction v must change
the student's own loss at the rate their gradient predicts, sum(grad * v). That property holds for
every right answer and names the parameter whose gradient is wrong.
"""

import math

import torch
import torch.nn.functional as F

from grader.testing import assert_tensor_close, expect_tensor

PARAMETERS = ("W1", "b1", "W2", "b2")
ACTIVATIONS = {"relu": F.relu, "gelu": F.gelu}

# (N, D, H, C): no two sizes equal, so a missing transpose cannot hide, plus a batch of one.
SHAPES = ((7, 6, 5, 4), (16, 3, 8, 2), (1, 4, 6, 3))

LAYER_NOTE = (
    "If a layer's own check (linear, relu, gelu, cross-entropy) fails too, fix that one first: this "
    "failure may be its fault."
)
GRADIENT_HINTS = {
    "W2": "grad_W2 = grad_logits.T @ a, with grad_logits = (softmax(logits) - one_hot(targets)) / N.",
    "b2": "grad_b2 = grad_logits.sum(dim=0): summed over the batch, not averaged again.",
    "W1": "grad_W1 = grad_h.T @ x, where grad_h = act'(h) * (grad_logits @ W2): the activation's backward needs "
    "the pre-activation h saved by the forward, not its output.",
    "b1": "grad_b1 = grad_h.sum(dim=0), with grad_h the gradient at the pre-activation h.",
}


def _params(D, H, C, dtype, device):
    return {
        "W1": torch.randn(H, D, dtype=dtype, device=device) / math.sqrt(D),
        "b1": torch.randn(H, dtype=dtype, device=device) * 0.1,
        "W2": torch.randn(C, H, dtype=dtype, device=device) / math.sqrt(H),
        "b2": torch.randn(C, dtype=dtype, device=device) * 0.1,
    }


def _batch(N, D, C, dtype, device):
    x = torch.randn(N, D, dtype=dtype, device=device)
    targets = torch.randint(0, C, (N,), device=device)
    return x, targets


def _reference(params, x, targets, activation):
    """Loss and gradients of the same MLP, by autograd."""
    leaves = {name: p.clone().requires_grad_(True) for name, p in params.items()}
    hidden = ACTIVATIONS[activation](F.linear(x, leaves["W1"], leaves["b1"]))
    loss = F.cross_entropy(F.linear(hidden, leaves["W2"], leaves["b2"]), targets)
    loss.backward()
    return loss.detach(), {name: leaf.grad for name, leaf in leaves.items()}


def _loss_and_grads(submission, params, x, targets, activation, what):
    """Call the student's function; return (loss as a 0-d tensor, grads dict) after checking the structure."""
    result = submission.mlp_loss_and_grads(params, x, targets, activation=activation)
    assert isinstance(result, (tuple, list)) and len(result) == 2, (
        f"{what}: expected (loss, grads), a tuple of two values, got "
        f"{type(result).__name__ if not isinstance(result, (tuple, list)) else f'{len(result)} values'}."
    )
    loss, grads = result
    if isinstance(loss, (int, float)) and not isinstance(loss, bool):
        loss = torch.tensor(float(loss), dtype=x.dtype, device=x.device)  # a plain number is a fine loss too
    expect_tensor(
        loss,
        shape=(),
        what=f"the loss of {what}",
        hint="the loss is one number: the mean over the batch of the per-example cross-entropies.",
    )
    assert isinstance(grads, dict) and set(grads) == set(PARAMETERS), (
        f"{what}: expected the gradients as a dict with the keys {list(PARAMETERS)}, got "
        f"{sorted(grads) if isinstance(grads, dict) else type(grads).__name__}."
    )
    for name in PARAMETERS:
        expect_tensor(
            grads[name],
            shape=tuple(params[name].shape),
            dtype=params[name].dtype,
            what=f"the gradient of {name} from {what}",
            hint=f"{GRADIENT_HINTS[name]} {LAYER_NOTE}",
        )
    return loss.to(x.dtype), grads


def test_mlp_gradients_match_autograd(submission, device):
    cases = [(activation, shape, torch.float64) for activation in ACTIVATIONS for shape in SHAPES]
    cases.append(("gelu", SHAPES[0], torch.float32))  # the dtype survives the whole chain
    for activation, (N, D, H, C), dtype in cases:
        params = _params(D, H, C, dtype, device)
        x, targets = _batch(N, D, C, dtype, device)
        what = f"mlp_loss_and_grads(activation={activation!r}) with N={N}, D={D}, H={H}, C={C}, {str(dtype)[6:]}"
        expected_loss, expected_grads = _reference(params, x, targets, activation)
        loss, grads = _loss_and_grads(submission, params, x, targets, activation, what)
        assert_tensor_close(
            loss,
            expected_loss,
            what=f"the loss of {what}",
            hint="the forward pass is off: logits = act(x @ W1.T + b1) @ W2.T + b2, then the mean cross-entropy. "
            + LAYER_NOTE,
        )
        for name in ("W2", "b2", "W1", "b1"):  # in the order backprop computes them
            assert_tensor_close(
                grads[name],
                expected_grads[name],
                what=f"the gradient of {name} from {what}",
                hint=f"{GRADIENT_HINTS[name]} {LAYER_NOTE}",
            )


def _diagnosis(ratio, N):
    """What a ratio predicted / finite-difference slope most likely means."""
    if N > 1 and abs(ratio - N) < 1e-3 * N:
        return f"your gradient is N = {N} times too large: the 1/N of the mean loss is missing from it."
    if N > 1 and abs(ratio - 1 / N) < 1e-3 / N:
        return f"your gradient is N = {N} times too small: the batch is averaged twice (divide by N only once)."
    return "the gradient does not belong to the loss: check the order of the backward steps and each layer's formula."


def test_mlp_passes_gradient_check(submission, device):
    eps = 1e-6
    dtype = torch.float64  # rounding error of the loss ~1e-16, divided by 2 * eps: ~1e-10 on the slope
    N, D, H, C = SHAPES[0]
    for activation in ACTIVATIONS:
        params = _params(D, H, C, dtype, device)
        x, targets = _batch(N, D, C, dtype, device)
        what = f"mlp_loss_and_grads(activation={activation!r})"
        _, grads = _loss_and_grads(submission, params, x, targets, activation, what)
        for name in ("W2", "b2", "W1", "b1"):
            direction = torch.randn_like(params[name])
            direction /= direction.norm()
            losses = []
            for sign in (1, -1):
                moved = {**params, name: params[name] + sign * eps * direction}
                loss, _ = _loss_and_grads(submission, moved, x, targets, activation, what)
                losses.append(float(loss))
            slope = (losses[0] - losses[1]) / (2 * eps)  # how your loss changes along the direction
            predicted = float((grads[name] * direction).sum())  # how your gradient says it changes
            # Central differences in float64: the slope is right to ~1e-9 here.
            assert abs(predicted - slope) <= 1e-6 * max(1.0, abs(slope)), (
                f"gradient check of {name} for {what}: moving {name} by eps={eps:g} along a random unit "
                f"direction v changes your loss at the rate (L(+eps v) - L(-eps v)) / (2 eps) = {slope:+.8f}, "
                f"but your gradient predicts sum(grad_{name} * v) = {predicted:+.8f}"
                + (f" ({predicted / slope:.4g} times as much)" if abs(slope) > 1e-12 else "")
                + f". Likely cause: {_diagnosis(predicted / slope if abs(slope) > 1e-12 else 0.0, N)} "
                f"{GRADIENT_HINTS[name]}"
            )
