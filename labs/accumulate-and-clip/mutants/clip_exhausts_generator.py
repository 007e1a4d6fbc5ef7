# catches: clip_matches_torch, clip_after_accumulation
# why: model.parameters() is a generator: total_grad_norm reads it to the end, and the scaling loop
# why: that follows finds it empty, so nothing is ever clipped and nothing complains
def clip_grad_norm(parameters, max_norm, norm_type=2.0):
    total_norm = total_grad_norm(parameters, norm_type)
    factor = torch.clamp(max_norm / (total_norm + 1e-6), max=1.0)
    for p in parameters:
        if p.grad is not None:
            p.grad.mul_(factor.to(device=p.grad.device, dtype=p.grad.dtype))
    return total_norm
