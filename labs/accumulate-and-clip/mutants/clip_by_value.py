# catches: clip_matches_torch
# why: clamping every element to [-max_norm, max_norm] (what clip_grad_value_ does) is not norm
# why: clipping: it changes the direction of the update and leaves its norm far above max_norm
def clip_grad_norm(parameters, max_norm, norm_type=2.0):
    parameters = list(parameters)
    total_norm = total_grad_norm(parameters, norm_type)
    for p in parameters:
        if p.grad is not None:
            p.grad.clamp_(-max_norm, max_norm)
    return total_norm
