# catches: grad_norm_matches_torch, clip_matches_torch
# why: a frozen parameter (requires_grad=False, as in fine-tuning) or one unused in the step has
# why: grad None; iterating over every parameter without skipping it crashes on None
def total_grad_norm(parameters, norm_type=2.0):
    norms = torch.stack([torch.linalg.vector_norm(p.grad, norm_type) for p in parameters])
    return torch.linalg.vector_norm(norms, norm_type)
