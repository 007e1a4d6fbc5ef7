# catches: clip_matches_torch
# why: returning the norm measured after clipping logs max_norm on every clipped step, which hides
# why: exactly the gradient spikes the log is there to show
def clip_grad_norm(parameters, max_norm, norm_type=2.0):
    parameters = list(parameters)
    total_norm = total_grad_norm(parameters, norm_type)
    factor = torch.clamp(max_norm / (total_norm + 1e-6), max=1.0)
    for p in parameters:
        if p.grad is not None:
            p.grad.mul_(factor.to(device=p.grad.device, dtype=p.grad.dtype))
    return total_grad_norm(parameters, norm_type)
