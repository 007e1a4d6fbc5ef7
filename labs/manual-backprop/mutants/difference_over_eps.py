# catches: numerical_gradient_matches
# why: the central difference spans 2 * eps, from x - eps to x + eps; dividing by eps doubles
# why: every estimate
def numerical_gradient(f, x, eps=1e-6):
    x = x.detach().clone()
    flat, grad = x.view(-1), torch.zeros_like(x)
    for i in range(flat.numel()):
        original = flat[i].item()
        flat[i] = original + eps
        f_plus = float(f(x))
        flat[i] = original - eps
        f_minus = float(f(x))
        flat[i] = original
        grad.view(-1)[i] = (f_plus - f_minus) / eps  # should be / (2 * eps)
    return grad
