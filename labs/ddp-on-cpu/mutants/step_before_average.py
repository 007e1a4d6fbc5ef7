# catches: data_parallel_matches_single_process
# why: optimizer.step() before the gradients are averaged: each rank updates with its own shard's
# why: gradient, the replicas drift apart, and the averaged gradients are thrown away by the next zero_grad
def data_parallel_step(model, optimizer, x_local, y_local):
    optimizer.zero_grad()
    loss = ddplab.loss_fn(model(x_local), y_local)
    loss.backward()
    optimizer.step()
    average_gradients(model)
    return loss.item()
