# catches: fixed_step_matches_reference_update, fixed_step_keeps_effective_batch
# why: zero_grad and step inside the micro-batch loop make k small steps of B/k examples each: the batch shrank after all, and the update is k steps long
def fixed_train_step(model, optimizer, x, y, micro_batch_size=512):
    total_loss = 0.0
    for xs, ys in zip(x.split(micro_batch_size), y.split(micro_batch_size)):
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(checkpointed_forward(model, xs), ys)
        loss.backward()
        optimizer.step()
        total_loss += loss.item()
    return total_loss
