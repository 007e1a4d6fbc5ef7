# catches: clip_after_accumulation
# why: clip_grad_norm placed right after loss.backward() inside the loop clips the partial sum at every
# why: micro-batch: earlier micro-batches are shrunk more often, and the result depends on the micro-batch size
def accumulated_step(model, optimizer, tokens, targets, micro_batch_size, max_norm=None):
    n_tokens = (targets != IGNORE_INDEX).sum()
    optimizer.zero_grad(set_to_none=True)
    loss_sum = 0.0
    norms = []
    for micro_tokens, micro_targets in zip(tokens.split(micro_batch_size), targets.split(micro_batch_size)):
        micro_loss_sum = lm_loss(model(micro_tokens), micro_targets, reduction="sum")
        (micro_loss_sum / n_tokens).backward()
        loss_sum += micro_loss_sum.item()
        if max_norm is not None:
            norms.append(float(clip_grad_norm(model.parameters(), max_norm)))
    grad_norm = total_grad_norm(model.parameters()) if max_norm is None else norms[-1]
    optimizer.step()
    return loss_sum / n_tokens.item(), float(grad_norm)
