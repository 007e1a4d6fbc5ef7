# catches: fixed_step_matches_reference_update, fixed_step_keeps_effective_batch
# why: "just reduce the batch size": the step fits, but it learns from 512 examples instead of 2048, a different gradient and a different experiment
def fixed_train_step(model, optimizer, x, y, micro_batch_size=512):
    x, y = x[:micro_batch_size], y[:micro_batch_size]  # (512, in_features): this is what fits
    optimizer.zero_grad(set_to_none=True)
    loss = loss_fn(checkpointed_forward(model, x), y)
    loss.backward()
    optimizer.step()
    return loss.item()
