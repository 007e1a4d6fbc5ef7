# catches: cross_entropy_backward_matches_autograd, mlp_gradients_match_autograd, mlp_passes_gradient_check
# why: the loss is the mean over the batch but its gradient is that of the sum: without the 1/N every
# why: gradient is N times too large, a hidden learning rate that changes with the batch size
def softmax_cross_entropy_backward(logits, targets):
    N, C = logits.shape
    shifted = logits - logits.amax(dim=1, keepdim=True)
    probs = shifted.exp() / shifted.exp().sum(dim=1, keepdim=True)
    return probs - F.one_hot(targets, num_classes=C).to(logits.dtype)  # no / N
