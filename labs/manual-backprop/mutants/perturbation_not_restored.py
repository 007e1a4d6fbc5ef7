# catches: numerical_gradient_matches
# why: x[i] += eps, then x[i] -= 2 * eps, and on to the next entry without adding eps back: every
# why: later estimate is taken at a point that has drifted further from x
def numerical_gradient(f, x, eps=1e-6):
    x = x.detach().clone()
    flat, grad = x.view(-1), torch.zeros_like(x)
    for i in range(flat.numel()):
        flat[i] += eps
        f_plus = float(f(x))
        flat[i] -= 2 * eps
        f_minus = float(f(x))
        grad.view(-1)[i] = (f_plus - f_minus) / (2 * eps)  # flat[i] is left at x_i - eps
    return grad
