# catches: breakdown_matches_measurement, adam_bytes_per_param
# why: Adam's state counted as one copy of the parameters (as for SGD with momentum): exp_avg_sq is forgotten, a whole model's worth of memory
def memory_breakdown(model, x, y, optimizer="adam"):
    state_tensors_per_parameter = {"adam": 1, "sgd_momentum": 1, "sgd": 0}[optimizer]
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    return {"weights": weights, "gradients": weights, "optimizer_state": state_tensors_per_parameter * weights,
            "activations": saved_activation_bytes(model, x, y)}


def adam_bytes_per_param(mixed_precision):
    if mixed_precision:
        return {"weights": 2, "gradients": 2, "master_weights": 4, "optimizer_state": 4}
    return {"weights": 4, "gradients": 4, "master_weights": 0, "optimizer_state": 4}
