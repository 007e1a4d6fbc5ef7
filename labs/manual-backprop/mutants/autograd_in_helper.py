# catches: no_autograd
# why: a small helper that switches autograd back on and calls .backward() does the calculus for every
# why: activation; it even works when grad mode is off, but it is autograd all the same
def _autograd_vjp(fn, grad_out, x):
    with torch.enable_grad():
        leaf = x.detach().requires_grad_(True)
        fn(leaf).backward(grad_out)
    return leaf.grad


def gelu_backward(grad_out, x):
    return _autograd_vjp(gelu_forward, grad_out, x)


def relu_backward(grad_out, x):
    return _autograd_vjp(relu_forward, grad_out, x)
