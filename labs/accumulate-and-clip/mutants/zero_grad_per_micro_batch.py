# catches: accumulation_equals_full_batch
# why: zero_grad() left at the top of the loop body, where it sat before accumulation was added, throws
# why: away what the earlier micro-batches accumulated: only the last one reaches the step
def accumulated_step(model, optimizer, tokens, targets, micro_batch_size, max_norm=None):
    n_tokens = (targets != IGNORE_INDEX).sum()
    loss_sum = 0.0
    for micro_tokens, micro_targets in zip(tokens.split(micro_batch_size), targets.split(micro_batch_size)):
        optimizer.zero_grad(set_to_none=True)
        micro_loss_sum = lm_loss(model(micro_tokens), micro_targets, reduction="sum")
        (micro_loss_sum / n_tokens).backward()
        loss_sum += micro_loss_sum.item()
    if max_norm is None:
        grad_norm = total_grad_norm(model.parameters())
    else:
        grad_norm = clip_grad_norm(model.parameters(), max_norm)
    optimizer.step()
    return loss_sum / n_tokens.item(), float(grad_norm)
