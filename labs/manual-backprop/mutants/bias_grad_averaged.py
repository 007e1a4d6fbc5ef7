# catches: linear_matches_autograd, mlp_gradients_match_autograd, mlp_passes_gradient_check
# why: averaging the bias gradient over the batch (mean instead of sum) has the right shape but
# why: divides by N a second time, since grad_out already carries the 1/N of the mean loss
def linear_backward(grad_out, x, weight):
    grad_x = grad_out @ weight
    grad_weight = grad_out.T @ x
    grad_bias = grad_out.mean(dim=0)  # should be grad_out.sum(dim=0)
    return grad_x, grad_weight, grad_bias
