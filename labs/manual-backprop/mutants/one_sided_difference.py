# catches: numerical_gradient_matches
# why: the one-sided difference (f(x + eps) - f(x)) / eps is off by about eps * f'' / 2, four orders of
# why: magnitude worse than the central difference at eps = 1e-4
def numerical_gradient(f, x, eps=1e-6):
    x = x.detach().clone()
    flat, grad = x.view(-1), torch.zeros_like(x)
    f_x = float(f(x))
    for i in range(flat.numel()):
        original = flat[i].item()
        flat[i] = original + eps
        grad.view(-1)[i] = (float(f(x)) - f_x) / eps
        flat[i] = original
    return grad
