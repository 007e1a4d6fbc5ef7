# catches: accumulation_equals_full_batch, accumulation_weights_tokens
# why: loss / accumulation_steps (the textbook line) weighs every micro-batch equally: right only when
# why: each holds the same number of real tokens, wrong for a short last micro-batch or ragged sequences
def accumulated_step(model, optimizer, tokens, targets, micro_batch_size, max_norm=None):
    chunks = list(zip(tokens.split(micro_batch_size), targets.split(micro_batch_size)))
    optimizer.zero_grad(set_to_none=True)
    total = 0.0
    for micro_tokens, micro_targets in chunks:
        loss = lm_loss(model(micro_tokens), micro_targets) / len(chunks)
        loss.backward()
        total += loss.item()
    if max_norm is None:
        grad_norm = total_grad_norm(model.parameters())
    else:
        grad_norm = clip_grad_norm(model.parameters(), max_norm)
    optimizer.step()
    return total, float(grad_norm)
