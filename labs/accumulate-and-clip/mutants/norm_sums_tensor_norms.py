# catches: grad_norm_matches_torch, clip_matches_torch
# why: adding up the per-tensor norms instead of taking the norm of them gives a "global norm" that is
# why: too large (by up to sqrt(number of tensors)), so every step is clipped harder than intended
def total_grad_norm(parameters, norm_type=2.0):
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return torch.tensor(0.0)
    return sum(torch.linalg.vector_norm(g, norm_type) for g in grads)
