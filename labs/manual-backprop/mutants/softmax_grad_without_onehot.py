# catches: cross_entropy_backward_matches_autograd, mlp_gradients_match_autograd, mlp_passes_gradient_check
# why: differentiating only the logsumexp half of the loss gives softmax / N and drops the -1 of the
# why: target class, so every logit is pushed down and the target is never pulled up
def softmax_cross_entropy_backward(logits, targets):
    N, C = logits.shape
    shifted = logits - logits.amax(dim=1, keepdim=True)
    probs = shifted.exp() / shifted.exp().sum(dim=1, keepdim=True)
    return probs / N  # should be (probs - one_hot(targets)) / N
