"""Checks of total_grad_norm and clip_grad_norm against torch.nn.utils.clip_grad_norm_, run here.

The parameters live in the submission process (the lab's ParameterBag, built there with gradients
sent from here), because clipping works in place on `.grad`. The gradients are read back as plain
tensors and compared with torch's clipping of the same gradients in this process. The bag always
holds a parameter without a gradient (frozen) and tensors of very different sizes and scales,
so the sum of per-tensor norms, per-tensor clipping and value clipping all give other numbers.
"""

import math

import torch

from grader.channel import SubmissionError
from grader.testing import assert_tensor_close, find_calls, tolerances

NORM_HINT = (
    "the global norm is the norm of all gradients concatenated into one vector: the norm_type-norm of the "
    "per-tensor norm_type-norms (torch.linalg.vector_norm(torch.stack(norms), norm_type))."
)
FROZEN_HINT = (
    "a parameter whose .grad is None (frozen, or unused in this step) must be skipped: "
    "[p.grad for p in parameters if p.grad is not None]."
)


def _bag_contents(dtype, device, scale=1.0):
    """Values and gradients of five parameters: a matrix, a vector, a scalar, a frozen one (None), a 3-d tensor."""
    shapes = [(4, 3), (7,), (), (2, 3), (2, 3, 2)]
    scales = [2.0, 0.5, 1.0, 1.0, 3.0]
    values = [torch.randn(shape, dtype=dtype, device=device) for shape in shapes]
    grads = [torch.randn(shape, dtype=dtype, device=device) * s * scale
             for shape, s in zip(shapes, scales, strict=True)]
    grads[3] = None  # frozen
    return values, grads


def _torch_clip(values, grads, max_norm, norm_type):
    """torch.nn.utils.clip_grad_norm_ on trusted copies: (total norm before, gradients after)."""
    params = [torch.nn.Parameter(v.clone()) for v in values]
    for p, g in zip(params, grads, strict=True):
        p.grad = None if g is None else g.clone()
    norm = torch.nn.utils.clip_grad_norm_(params, max_norm, norm_type=norm_type)
    return float(norm), [None if p.grad is None else p.grad for p in params]


def _as_norm(value, what):
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return float(value.detach().double().cpu())
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    kind = f"a tensor of shape {tuple(value.shape)}" if isinstance(value, torch.Tensor) else f"a {type(value).__name__}"
    raise AssertionError(f"{what}: expected the total norm as a 0-dim tensor (like torch) or a float, got {kind}.")


def _call(function, what, *args, **kwargs):
    """Call into the submission; a crash on the frozen parameter gets its likely cause."""
    try:
        return function(*args, **kwargs)
    except SubmissionError as error:
        if "NoneType" in error.message:
            raise AssertionError(
                f"{what} raised {error.type_name}: {error.message}\nLikely cause: {FROZEN_HINT}") from None
        raise


def _close(a, b, rtol):
    return abs(a - b) <= rtol * abs(b) + 1e-12


def _norm_name(norm_type):
    return "inf" if math.isinf(norm_type) else f"{norm_type:g}"


def test_grad_norm_matches_torch(submission, device):
    acclab = submission.module("acclab")
    for dtype in (torch.float64, torch.float32):
        rtol = tolerances(dtype)[0]
        values, grads = _bag_contents(dtype, device)
        for norm_type in (2.0, 1.0, math.inf):
            expected, _ = _torch_clip(values, grads, math.inf, norm_type)
            bag = acclab.make_parameters(values, grads)
            what = (f"total_grad_norm(model.parameters(), norm_type={_norm_name(norm_type)}) with {dtype} gradients "
                    "of shapes (4, 3), (7,), (), (2, 3, 2) and one frozen parameter (grad None)")
            got = _as_norm(_call(submission.total_grad_norm, what, bag.parameters(), norm_type=norm_type), what)
            if _close(got, expected, rtol):
                continue
            present = [g for g in grads if g is not None]
            per_tensor_sum = sum(float(torch.linalg.vector_norm(g, norm_type)) for g in present)
            value_norms = [torch.linalg.vector_norm(v, norm_type) for v in values]
            weights_norm = float(torch.linalg.vector_norm(torch.stack(value_norms), norm_type))
            weights_norm_present = float(torch.linalg.vector_norm(
                torch.stack([n for n, g in zip(value_norms, grads, strict=True) if g is not None]), norm_type))
            two_norm = float(torch.linalg.vector_norm(torch.cat([g.flatten() for g in present]), 2.0))
            if _close(got, per_tensor_sum, rtol):
                cause = "you added up the per-tensor norms; " + NORM_HINT
            elif _close(got, weights_norm, rtol) or _close(got, weights_norm_present, rtol):
                cause = "that is the norm of the parameters' values; clipping looks at their gradients, p.grad."
            elif norm_type != 2.0 and _close(got, two_norm, rtol):
                cause = (f"that is the 2-norm; norm_type={_norm_name(norm_type)} was ignored. "
                         "torch.linalg.vector_norm(x, ord) takes any ord, float('inf') included.")
            else:
                cause = NORM_HINT
            raise AssertionError(f"{what}: expected {expected:.10g} (torch's global norm), got {got:.10g}.\n"
                                 f"Likely cause: {cause}")


def test_clip_below_max_is_noop(submission, device):
    acclab = submission.module("acclab")
    values, grads = _bag_contents(torch.float64, device)
    norm = float(torch.cat([g.flatten() for g in grads if g is not None]).norm())
    for fraction in (0.3, 0.99):
        max_norm = norm / fraction
        bag = acclab.make_parameters(values, grads)
        what = f"clip_grad_norm(model.parameters(), max_norm={max_norm:.4g}) on gradients of global norm {norm:.4g}"
        returned = _as_norm(_call(submission.clip_grad_norm, what, bag.parameters(), max_norm), what)
        after = bag.grads()
        for i, (g, got) in enumerate(zip(grads, after, strict=True)):
            if g is None:
                continue
            ratio = float(got.norm() / g.norm()) if isinstance(got, torch.Tensor) else float("nan")
            assert_tensor_close(
                got, g, what=f"{what}: gradient {i} afterwards (expected unchanged; it was scaled by {ratio:.4f})",
                hint="clipping only ever scales DOWN: the factor is min(1, max_norm / (norm + 1e-6)). Below max_norm "
                     "the gradients stay exactly as they are; without the min(1, ...) every step is rescaled "
                     "to length max_norm.")
        assert _close(returned, norm, 1e-7), (
            f"{what}: expected the total norm {norm:.10g} to be returned, got {returned:.10g}. Likely cause: the "
            "returned value is not the global norm of the gradients (see total_grad_norm).")


def _diagnose_clip(before, after, expected_after, grads_after, max_norm, container_passed):
    """The likely cause of clipped gradients that differ from torch's."""
    unchanged = torch.allclose(after, before, rtol=1e-9, atol=0.0)
    same_direction = _cosine(after, before) > 1 - 1e-9
    if unchanged:
        if container_passed:
            return ("nothing was clipped when `parameters` is a generator (model.parameters()), although a list "
                    "worked: your function reads the generator twice (once for the norm, once to scale), and the "
                    "second pass finds it empty. Start with parameters = list(parameters).")
        return ("nothing was clipped: the gradients must be scaled in place, p.grad.mul_(factor) (or p.grad = "
                "p.grad * factor); `g = g * factor` in a loop only rebinds a local name. Also check that the "
                "parameters are not read twice from a generator.")
    tensor_norms_capped = all(float(g.norm()) <= max_norm * (1 + 1e-6) for g in grads_after)
    if not same_direction and tensor_norms_capped:
        return ("every tensor was clipped to max_norm on its own, which changes the direction of the update. "
                "Compute ONE global norm over all gradients and scale every gradient by the same factor.")
    if not same_direction and float(after.abs().max()) <= max_norm * (1 + 1e-9):
        return ("each element was clamped to [-max_norm, max_norm] (that is clip_grad_value_, a different tool). "
                "Scale all gradients by the same factor min(1, max_norm / (norm + 1e-6)) instead.")
    if same_direction:
        factor = float(after.norm() / before.norm())
        wanted = float(expected_after.norm() / before.norm())
        return (f"the direction is right but the factor is {factor:.6g} instead of {wanted:.6g}: use "
                "min(1, max_norm / (total_norm + 1e-6)) with the global norm of total_grad_norm.")
    return "the clipped gradients point elsewhere: every gradient must be multiplied by the same factor."


def _cosine(a, b):
    return float(a @ b / (a.norm() * b.norm()))


def test_clip_matches_torch(submission, device):
    acclab = submission.module("acclab")
    cases = ((torch.float64, 2.0), (torch.float32, 2.0), (torch.float64, math.inf), (torch.float64, 1.0))
    for dtype, norm_type in cases:
        rtol, atol = tolerances(dtype)
        values, grads = _bag_contents(dtype, device, scale=3.0)
        total, _ = _torch_clip(values, grads, math.inf, norm_type)
        max_norm = 0.2 * total
        expected_norm, expected_grads = _torch_clip(values, grads, max_norm, norm_type)
        container_passed = False
        for container in ("a list", "a generator"):
            bag = acclab.make_parameters(values, grads)
            parameters = bag.params if container == "a list" else bag.parameters()
            what = (f"clip_grad_norm(parameters as {container}, max_norm={max_norm:.4g}, "
                    f"norm_type={_norm_name(norm_type)}) with {dtype} gradients of global norm {total:.4g}")
            returned = _as_norm(_call(submission.clip_grad_norm, what, parameters, max_norm, norm_type=norm_type), what)
            after = bag.grads()
            assert after[3] is None, (
                f"{what}: expected the frozen parameter (grad None) to keep grad None, got a tensor. Likely cause: "
                + FROZEN_HINT)
            present = [i for i, g in enumerate(grads) if g is not None]
            got_flat = torch.cat([after[i].double().flatten() for i in present])
            expected_flat = torch.cat([expected_grads[i].double().flatten() for i in present])
            before_flat = torch.cat([grads[i].double().flatten() for i in present])
            if not torch.allclose(got_flat, expected_flat, rtol=rtol, atol=atol):
                cause = _diagnose_clip(before_flat, got_flat, expected_flat, [after[i] for i in present], max_norm,
                                       container_passed)
                for i in present:  # the first gradient that differs, with torch's numbers
                    assert_tensor_close(after[i], expected_grads[i],
                                        what=f"{what}: gradient {i} afterwards, against torch's clip_grad_norm_",
                                        hint=cause)
            if not _close(returned, expected_norm, rtol):
                if _close(returned, max_norm, 1e-4):
                    cause = ("that is the norm AFTER clipping (max_norm). Return the total norm from before clipping, "
                             "as torch does: it is the number worth logging.")
                else:
                    cause = "return the global norm of the gradients before clipping (total_grad_norm's result)."
                raise AssertionError(f"{what}: expected the returned norm {expected_norm:.10g} (before clipping, as "
                                     f"torch returns it), got {returned:.10g}.\nLikely cause: {cause}")
            container_passed = True


# torch's clipping utilities. A dotted name matches only an attribute access or an import of its
# last part, so the student's own function called clip_grad_norm is fine while
# torch.nn.utils.clip_grad_norm (the deprecated alias of clip_grad_norm_) is not.
LIBRARY_CLIPPING = (
    "clip_grad_norm_",
    "clip_grads_with_norm_",
    "get_total_norm",
    "clip_grad_value_",
    "utils.clip_grad_norm",
)


def test_own_clipping(submission, submission_source, device):
    # No points for an empty notebook: the clipping must work first.
    acclab = submission.module("acclab")
    grads = [torch.full((3,), 2.0, device=device), torch.full((4,), 1.5, device=device)]  # global norm sqrt(21)
    bag = acclab.make_parameters([torch.zeros(3, device=device), torch.zeros(4, device=device)], grads)
    submission.clip_grad_norm(bag.parameters(), 1.0)
    after = torch.cat([g.flatten() for g in bag.grads()])
    expected = torch.cat(grads) / (math.sqrt(21) + 1e-6)
    assert_tensor_close(after, expected, what="clip_grad_norm on two gradients of global norm 4.58 with max_norm=1 "
                        "(this check needs a working implementation)",
                        hint="clip_grad_norm is not finished yet: see the clip_matches_torch check.")

    found = find_calls(submission_source, list(LIBRARY_CLIPPING))
    assert not found, (
        f"expected clipping written by hand, but the code uses torch's clipping utilities: {found}. Compute the "
        "global norm and the factor yourself, and leave these names out of your code altogether (strings included)."
    )
