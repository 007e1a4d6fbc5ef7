# catches: average_gradients_mean, data_parallel_matches_single_process
# why: all_reduce sums; without the division by the world size every step is N times too large, as
# why: if the learning rate had been multiplied by the number of ranks
def average_gradients(model):
    for parameter in model.parameters():
        if parameter.grad is not None:
            dist.all_reduce(parameter.grad, op=dist.ReduceOp.SUM)
