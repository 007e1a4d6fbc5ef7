# catches: no_autograd
# why: rebuilding the layer with requires_grad and asking torch.autograd.grad for the gradients gets
# why: the right numbers and skips the exercise
def linear_backward(grad_out, x, weight):
    x = x.detach().requires_grad_(True)
    weight = weight.detach().requires_grad_(True)
    bias = torch.zeros(weight.shape[0], dtype=x.dtype, device=x.device, requires_grad=True)
    y = x @ weight.T + bias
    return torch.autograd.grad(y, (x, weight, bias), grad_out)
