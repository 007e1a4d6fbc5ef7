# catches: linear_matches_autograd, mlp_gradients_match_autograd, mlp_passes_gradient_check
# why: thinking of weight as (in, out), grad_weight = x.T @ grad_out comes out (in, out), the
# why: transpose of the right gradient; for a square layer it is even the right shape and trains wrong
def linear_backward(grad_out, x, weight):
    grad_x = grad_out @ weight  # (N, in)
    grad_weight = x.T @ grad_out  # (in, out) -- should be grad_out.T @ x, (out, in)
    grad_bias = grad_out.sum(dim=0)
    return grad_x, grad_weight, grad_bias
