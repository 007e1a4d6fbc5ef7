# catches: fixed_step_matches_reference_update, fixed_step_keeps_effective_batch
# why: zero_grad inside the loop wipes what the earlier micro-batches accumulated; only the last micro-batch reaches the single step
def fixed_train_step(model, optimizer, x, y, micro_batch_size=512):
    total_loss = 0.0
    for xs, ys in zip(x.split(micro_batch_size), y.split(micro_batch_size)):
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(checkpointed_forward(model, xs), ys) * (xs.shape[0] / x.shape[0])
        loss.backward()
        total_loss += loss.item()
    optimizer.step()
    return total_loss
