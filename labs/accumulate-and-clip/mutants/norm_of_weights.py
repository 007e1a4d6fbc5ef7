# catches: grad_norm_matches_torch, clip_matches_torch
# why: p.norm() is the norm of the weights, not of the gradient p.grad.norm(): the clipping factor then
# why: follows the size of the model, not the size of the step
def total_grad_norm(parameters, norm_type=2.0):
    params = [p for p in parameters if p.grad is not None]
    if not params:
        return torch.tensor(0.0)
    norms = torch.stack([torch.linalg.vector_norm(p.detach(), norm_type) for p in params])
    return torch.linalg.vector_norm(norms, norm_type)
