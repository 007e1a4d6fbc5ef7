# catches: step_stays_in_micro_batches
# why: running the whole batch through the model and only then "accumulating" gives the right update
# why: and saves no memory at all: the activations of every sequence are alive at once
def accumulated_step(model, optimizer, tokens, targets, micro_batch_size, max_norm=None):
    optimizer.zero_grad(set_to_none=True)
    logits = model(tokens)
    n_tokens = (targets != IGNORE_INDEX).sum()
    loss_sum = 0.0
    for micro_logits, micro_targets in zip(logits.split(micro_batch_size), targets.split(micro_batch_size)):
        micro_loss_sum = lm_loss(micro_logits, micro_targets, reduction="sum")
        (micro_loss_sum / n_tokens).backward(retain_graph=True)
        loss_sum += micro_loss_sum.item()
    if max_norm is None:
        grad_norm = total_grad_norm(model.parameters())
    else:
        grad_norm = clip_grad_norm(model.parameters(), max_norm)
    optimizer.step()
    return loss_sum / n_tokens.item(), float(grad_norm)
