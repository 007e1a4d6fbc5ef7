# catches: average_gradients_mean, data_parallel_matches_single_process
# why: "we train on two processes": the world size written as 2, right until the job runs on 3 or 4
def average_gradients(model):
    for parameter in model.parameters():
        if parameter.grad is not None:
            dist.all_reduce(parameter.grad, op=dist.ReduceOp.SUM)
            parameter.grad /= 2
