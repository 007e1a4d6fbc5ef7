# catches: step_reports_loss_and_norm
# why: measuring the norm for the log after clipping reports max_norm on every clipped step, so the
# why: gradient spikes that clipping exists for never show in the logs
def accumulated_step(model, optimizer, tokens, targets, micro_batch_size, max_norm=None):
    n_tokens = (targets != IGNORE_INDEX).sum()
    optimizer.zero_grad(set_to_none=True)
    loss_sum = 0.0
    for micro_tokens, micro_targets in zip(tokens.split(micro_batch_size), targets.split(micro_batch_size)):
        micro_loss_sum = lm_loss(model(micro_tokens), micro_targets, reduction="sum")
        (micro_loss_sum / n_tokens).backward()
        loss_sum += micro_loss_sum.item()
    if max_norm is not None:
        clip_grad_norm(model.parameters(), max_norm)
    grad_norm = total_grad_norm(model.parameters())
    optimizer.step()
    return loss_sum / n_tokens.item(), float(grad_norm)
