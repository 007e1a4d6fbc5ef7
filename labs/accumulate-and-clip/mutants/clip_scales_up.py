# catches: clip_below_max_is_noop
# why: without min(1, ...) the factor max_norm / norm is above 1 for small gradients, so every step is
# why: rescaled to length max_norm: "clipping" turns into gradient normalisation
def clip_grad_norm(parameters, max_norm, norm_type=2.0):
    parameters = list(parameters)
    total_norm = total_grad_norm(parameters, norm_type)
    factor = max_norm / (total_norm + 1e-6)
    for p in parameters:
        if p.grad is not None:
            p.grad.mul_(factor.to(device=p.grad.device, dtype=p.grad.dtype))
    return total_norm
