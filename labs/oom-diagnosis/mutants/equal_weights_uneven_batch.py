# catches: fixed_step_matches_reference_update
# why: dividing every micro-batch's loss by k is right only when all micro-batches are equal; with a batch of 1000 in chunks of 512 the last one weighs too much
def fixed_train_step(model, optimizer, x, y, micro_batch_size=512):
    chunks = list(zip(x.split(micro_batch_size), y.split(micro_batch_size)))
    optimizer.zero_grad(set_to_none=True)
    total_loss = 0.0
    for xs, ys in chunks:
        loss = loss_fn(checkpointed_forward(model, xs), ys) / len(chunks)
        loss.backward()
        total_loss += loss.item()
    optimizer.step()
    return total_loss
