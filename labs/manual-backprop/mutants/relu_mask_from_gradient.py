# catches: relu_matches_autograd, mlp_gradients_match_autograd, mlp_passes_gradient_check
# why: building the ReLU mask from the sign of the incoming gradient instead of the forward's input
# why: x; it looks like "let positive things through" and has the right shape everywhere
def relu_backward(grad_out, x):
    return grad_out * (grad_out > 0).to(grad_out.dtype)  # should be (x > 0)
