# catches: accumulation_equals_full_batch, accumulation_weights_tokens
# why: backpropagating each micro-batch's mean loss as it is sums k means: k times the gradient, which
# why: Adam divides away but the clipping threshold, the logged norm and SGD do not
def accumulated_step(model, optimizer, tokens, targets, micro_batch_size, max_norm=None):
    optimizer.zero_grad(set_to_none=True)
    losses = []
    for micro_tokens, micro_targets in zip(tokens.split(micro_batch_size), targets.split(micro_batch_size)):
        loss = lm_loss(model(micro_tokens), micro_targets)
        loss.backward()
        losses.append(loss.item())
    if max_norm is None:
        grad_norm = total_grad_norm(model.parameters())
    else:
        grad_norm = clip_grad_norm(model.parameters(), max_norm)
    optimizer.step()
    return sum(losses) / len(losses), float(grad_norm)
