# catches: linear_matches_autograd, mlp_gradients_match_autograd, mlp_passes_gradient_check
# why: taking grad_out itself as the bias gradient forgets that the bias was broadcast over the batch;
# why: it comes out (N, out), and b - lr * grad_b then broadcasts silently into an (N, out) "bias"
def linear_backward(grad_out, x, weight):
    grad_x = grad_out @ weight
    grad_weight = grad_out.T @ x
    grad_bias = grad_out  # (N, out) -- should be grad_out.sum(dim=0), (out,)
    return grad_x, grad_weight, grad_bias
