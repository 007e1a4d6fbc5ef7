# catches: gelu_matches_autograd, mlp_gradients_match_autograd, mlp_passes_gradient_check
# why: differentiating x * Phi(x) as if x were a constant keeps Phi(x) and drops the x * phi(x) term
# why: of the product rule
def gelu_backward(grad_out, x):
    cdf = 0.5 * (1.0 + torch.erf(x / math.sqrt(2.0)))
    return grad_out * cdf  # should be grad_out * (cdf + x * pdf)
