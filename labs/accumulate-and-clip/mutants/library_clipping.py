# catches: own_clipping
# why: torch's clip_grad_norm_ gives the right numbers, but the lab asks for the clipping written by hand
def clip_grad_norm(parameters, max_norm, norm_type=2.0):
    return torch.nn.utils.clip_grad_norm_(parameters, max_norm, norm_type=norm_type)
