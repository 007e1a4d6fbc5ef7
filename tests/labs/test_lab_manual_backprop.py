"""Unit tests of the manual-backprop lab's trusted source search: which code counts as graded.

`graded_code` decides which statements of a submission the no_autograd check reads: the graded
functions and everything they use, never the demo cells. A miss lets autograd through; a false
positive costs a student points for a demo cell, so both directions are tested here.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

CHECK = Path(__file__).resolve().parents[2] / "labs" / "manual-backprop" / "checks" / "test_no_autograd.py"


def _load():
    """Import the check file under a private name (it is not a package, and pytest must not collect it here)."""
    name = "_manual_backprop_no_autograd"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, CHECK)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


no_autograd = _load()
find_calls = no_autograd.find_calls


def _cells(*sources: str) -> str:
    """Join cells the way the engine builds submission_source."""
    return "\n\n".join(f"# %% cell {index}\n{source}" for index, source in enumerate(sources, start=1))


def _hits(source: str) -> list[str]:
    """What the check would report for this source, as 'what in which definition'."""
    found = []
    for name, code in no_autograd.graded_code(source):
        found += [
            f"{no_autograd._LINE_SUFFIX.sub('', hit)} in {name}"
            for hit in find_calls(code, list(no_autograd.AUTOGRAD_NAMES))
        ]
    return found


CLEAN_RELU = """
def relu_backward(grad_out, x):
    return grad_out * (x > 0).to(grad_out.dtype)
"""


def test_demo_cells_may_use_autograd():
    demo = """
import torch.autograd
x = torch.randn(3, requires_grad=True)
(x * 2).sum().backward()
print(torch.autograd.grad((x ** 2).sum(), x))
with torch.enable_grad():
    pass
"""
    assert _hits(_cells("import torch", CLEAN_RELU, demo)) == []


def test_autograd_inside_a_graded_function_is_found():
    source = _cells(
        "import torch",
        """
def linear_backward(grad_out, x, weight):
    x = x.detach().requires_grad_(True)
    return torch.autograd.grad((x @ weight.T).sum(), x)
""",
    )
    assert _hits(source) == ["autograd in linear_backward"]


def test_a_helper_reached_from_a_graded_function_is_searched_transitively():
    source = _cells(
        "import torch",
        """
def _inner(fn, g, x):
    with torch.enable_grad():
        leaf = x.detach().requires_grad_(True)
        fn(leaf).backward(g)
    return leaf.grad

def _outer(fn, g, x):
    return _inner(fn, g, x)

def gelu_backward(grad_out, x):
    return _outer(torch.nn.functional.gelu, grad_out, x)
""",
    )
    assert _hits(source) == ["enable_grad in _inner"]


def test_an_import_under_another_name_is_followed():
    aliased = _cells(
        "import math\nfrom torch import autograd as ag",
        """
def relu_backward(grad_out, x):
    leaf = x.detach().requires_grad_(True)
    return ag.grad(leaf.relu(), leaf, grad_out)[0]
""",
    )
    assert _hits(aliased) == ["torch.autograd in ag"], _hits(aliased)
    from_import = _cells(
        "from torch.autograd import grad as vjp",
        """
def relu_backward(grad_out, x):
    return vjp(x.relu(), x, grad_out)[0]
""",
    )
    assert _hits(from_import) == ["torch.autograd in vjp"], _hits(from_import)


def test_only_the_imported_names_the_graded_code_uses_are_searched():
    source = _cells(
        "import math, torch.autograd as ag",
        """
def gelu_forward(x):
    return 0.5 * x * (1 + torch.erf(x / math.sqrt(2)))
""",
    )
    assert _hits(source) == []


def test_a_plain_import_of_torch_autograd_in_a_demo_does_not_taint_torch():
    # `import torch.autograd` binds the name torch, which every graded function uses.
    source = _cells("import torch\nimport torch.autograd", CLEAN_RELU)
    assert _hits(source) == []


def test_a_local_name_does_not_pull_in_a_global_of_the_same_name():
    demo = "x = torch.zeros(3).requires_grad_()\nout = torch.autograd.grad(x.sum(), x)"
    source = _cells("import torch", demo, CLEAN_RELU)  # relu_backward's x is its own parameter
    assert _hits(source) == []


def test_a_global_the_graded_code_reads_is_searched():
    source = _cells(
        "import torch",
        "BACKWARD = torch.autograd.grad",
        """
def relu_backward(grad_out, x):
    return BACKWARD(x.relu(), x, grad_out)[0]
""",
    )
    assert _hits(source) == ["autograd in BACKWARD"]


def test_a_layer_class_with_a_backward_method_is_fine_unless_it_uses_autograd():
    layer = """
class Linear:
    def __init__(self, w):
        self.w = w
    def forward(self, x):
        self.x = x
        return x @ self.w.T
    def backward(self, g):
        self.grad_w = g.T @ self.x
        return g @ self.w
"""
    graded = """
def mlp_loss_and_grads(params, x, targets, activation="relu"):
    layer = Linear(params["W1"])
    out = layer.forward(x)
    return out.sum(), {"W1": layer.grad_w}
"""
    assert _hits(_cells("import torch", layer, graded)) == []
    cheating = layer.replace("self.grad_w = g.T @ self.x", "self.grad_w = torch.autograd.grad(g.sum(), self.w)[0]")
    assert _hits(_cells("import torch", cheating, graded)) == ["autograd in Linear"]


def test_every_definition_counts_when_a_later_cell_redefines_one():
    later = """
def relu_backward(grad_out, x):
    with torch.enable_grad():
        return grad_out
"""
    assert _hits(_cells("import torch", CLEAN_RELU, later)) == ["enable_grad in relu_backward"]


def test_a_cell_that_does_not_parse_leaves_the_others_searched():
    broken = "def oops(:\n    pass"
    cheating = "def relu_backward(grad_out, x):\n    return torch.func.grad(lambda t: t.relu().sum())(x)"
    assert _hits(_cells("import torch", broken, cheating)) == ["func in relu_backward"]
