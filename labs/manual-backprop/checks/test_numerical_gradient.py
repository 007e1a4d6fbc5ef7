"""The student's finite-difference gradient against autograd's, computed here (trusted).

The functions differentiated are torch's own, reached in the submission process as handles
(`submission.module("torch")`), so no code crosses from this side. eps = 1e-4 separates the
methods: a central difference is then accurate to about 1e-9, a one-sided one only to about 1e-4,
and an estimate that forgets to put each entry back drifts by about as much.
"""

import torch

from grader.testing import assert_tensor_close, expect_tensor

EPS = 1e-4
# Central differences at eps = 1e-4 land within ~1e-9 of the truth on these functions (measured);
# the tolerance leaves three orders of magnitude of room, and still fails a one-sided difference.
RTOL, ATOL = 1e-6, 1e-8


def test_numerical_gradient_matches(submission, device):
    torch_there = submission.module("torch")
    cases = (
        ("torch.linalg.vector_norm", torch_there.linalg.vector_norm, torch.linalg.vector_norm, (3, 4)),
        ("torch.std", torch_there.std, torch.std, (2, 5)),
        # linear in each entry, so even a one-sided difference is exact: isolates the 2 * eps and the put-back
        ("torch.prod", torch_there.prod, torch.prod, (5,)),
    )
    for name, theirs, ours, shape in cases:
        x = torch.randn(shape, dtype=torch.float64, device=device)
        leaf = x.clone().requires_grad_(True)
        ours(leaf).backward()
        got = submission.numerical_gradient(theirs, x, eps=EPS)
        what = f"numerical_gradient({name}, x of shape {shape}, eps={EPS:g}) in float64"
        expect_tensor(
            got,
            shape=shape,
            dtype=torch.float64,
            what=what,
            hint="start from torch.zeros_like(x): one estimate per entry of x, in x's dtype and on x's device.",
        )
        assert_tensor_close(
            got,
            leaf.grad,
            what=what,
            rtol=RTOL,
            atol=ATOL,
            hint="use the central difference (f(x + eps e_i) - f(x - eps e_i)) / (2 * eps): the one-sided "
            "(f(x + eps e_i) - f(x)) / eps is off by about eps * f'' / 2. Put each entry back to its original "
            "value before nudging the next one, and divide by 2 * eps, not eps.",
        )
