# catches: linear_matches_autograd, mlp_gradients_match_autograd, mlp_passes_gradient_check
# why: dividing the weight and bias gradients by the batch size in the linear layer averages a second
# why: time: the 1/N of the mean loss already came in through grad_out from the cross-entropy
def linear_backward(grad_out, x, weight):
    N = x.shape[0]
    grad_x = grad_out @ weight
    grad_weight = grad_out.T @ x / N  # should not divide again
    grad_bias = grad_out.sum(dim=0) / N
    return grad_x, grad_weight, grad_bias
