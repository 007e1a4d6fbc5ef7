# catches: clip_matches_torch
# why: clipping each tensor to max_norm on its own shrinks only the large gradients, so the small
# why: ones gain weight and the update changes direction; global-norm clipping uses one factor for all
def clip_grad_norm(parameters, max_norm, norm_type=2.0):
    parameters = list(parameters)
    total_norm = total_grad_norm(parameters, norm_type)
    for p in parameters:
        if p.grad is not None:
            norm = torch.linalg.vector_norm(p.grad, norm_type)
            p.grad.mul_(torch.clamp(max_norm / (norm + 1e-6), max=1.0))
    return total_norm
