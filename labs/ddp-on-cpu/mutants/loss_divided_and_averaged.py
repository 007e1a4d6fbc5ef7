# catches: data_parallel_matches_single_process
# why: averaging twice: the loss divided by the world size (a habit from gradient accumulation, or
# why: to "undo" DDP's sum) and the gradients averaged as well, so every step is N times too small
def data_parallel_step(model, optimizer, x_local, y_local):
    optimizer.zero_grad()
    loss = ddplab.loss_fn(model(x_local), y_local) / dist.get_world_size()
    loss.backward()
    average_gradients(model)
    optimizer.step()
    return loss.item()
