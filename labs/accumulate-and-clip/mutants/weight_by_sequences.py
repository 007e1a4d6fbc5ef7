# catches: accumulation_weights_tokens, step_reports_loss_and_norm
# why: weighting each micro-batch's mean token loss by its share of the sequences (b_i / B) is right for
# why: one label per example but not for tokens: the accumulation bug of popular trainers until 2024
def accumulated_step(model, optimizer, tokens, targets, micro_batch_size, max_norm=None):
    B = tokens.shape[0]
    optimizer.zero_grad(set_to_none=True)
    total = 0.0
    for micro_tokens, micro_targets in zip(tokens.split(micro_batch_size), targets.split(micro_batch_size)):
        loss = lm_loss(model(micro_tokens), micro_targets) * micro_tokens.shape[0] / B
        loss.backward()
        total += loss.item()
    if max_norm is None:
        grad_norm = total_grad_norm(model.parameters())
    else:
        grad_norm = clip_grad_norm(model.parameters(), max_norm)
    optimizer.step()
    return total, float(grad_norm)
