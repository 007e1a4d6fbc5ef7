# catches: grad_norm_matches_torch
# why: the 2-norm written out as sqrt(sum of squares) quietly ignores norm_type, so max_norm with
# why: norm_type=inf (or 1) clips against the wrong quantity
def total_grad_norm(parameters, norm_type=2.0):
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return torch.tensor(0.0)
    return torch.sqrt(sum((g ** 2).sum() for g in grads))
