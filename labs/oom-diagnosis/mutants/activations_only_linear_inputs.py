# catches: breakdown_matches_measurement
# why: counting activations with forward hooks on nn.Linear modules sees each Linear's input but not what functional ops (gelu, cross_entropy) save: the wide gelu inputs are missed
def saved_activation_bytes(model, x, y):
    total = 0

    def count_input(module, inputs, output):
        nonlocal total
        total += inputs[0].numel() * inputs[0].element_size()

    handles = [m.register_forward_hook(count_input) for m in model.modules() if isinstance(m, torch.nn.Linear)]
    try:
        loss_fn(model(x), y)
    finally:
        for handle in handles:
            handle.remove()
    return total
