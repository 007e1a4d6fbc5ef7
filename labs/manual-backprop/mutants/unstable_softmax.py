# catches: cross_entropy_loss_matches_torch, cross_entropy_backward_matches_autograd
# why: exp() of the raw logits without subtracting each row's maximum: exact for small logits, inf and
# why: nan as soon as a logit passes about 88 in float32
def softmax_cross_entropy(logits, targets):
    N = logits.shape[0]
    log_probs = logits - logits.exp().sum(dim=1, keepdim=True).log()
    return -log_probs[torch.arange(N, device=logits.device), targets].mean()


def softmax_cross_entropy_backward(logits, targets):
    N, C = logits.shape
    probs = logits.exp() / logits.exp().sum(dim=1, keepdim=True)
    return (probs - F.one_hot(targets, num_classes=C).to(logits.dtype)) / N
