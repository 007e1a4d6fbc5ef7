# catches: fixed_step_matches_reference_update, fixed_step_keeps_effective_batch
# why: accumulating each micro-batch's mean loss without the n_i / B factor sums k means: k times the gradient (Adam hides it; SGD, clipping and schedules do not)
def fixed_train_step(model, optimizer, x, y, micro_batch_size=512):
    optimizer.zero_grad(set_to_none=True)
    total_loss = 0.0
    for xs, ys in zip(x.split(micro_batch_size), y.split(micro_batch_size)):
        loss = loss_fn(checkpointed_forward(model, xs), ys)
        loss.backward()
        total_loss += loss.item()
    optimizer.step()
    return total_loss
