"""The gradients are the student's own: right with autograd switched off, and no autograd in the graded code.

Both halves run here, in the trusted process. The behaviour: the submission's grad mode is turned
off through its own torch (a handle), so an `out.backward()` inside a graded function has no graph
to walk. The code: the graded functions are found in the submission's source with `ast`, and so is
every top-level function, class, assignment or import they use, transitively; only that code is
searched, so demo cells may compare with autograd freely.
"""

import ast
import math
import re

import torch
import torch.nn.functional as F

from grader.channel import SubmissionError
from grader.testing import assert_tensor_close, find_calls

GRADED = (
    "numerical_gradient",
    "linear_forward",
    "linear_backward",
    "relu_forward",
    "relu_backward",
    "gelu_forward",
    "gelu_backward",
    "softmax_cross_entropy",
    "softmax_cross_entropy_backward",
    "mlp_loss_and_grads",
)

# What does the work of a backward pass for you. A dotted name matches an attribute access or an
# import of its last part (see grader.testing.find_calls): `.autograd`, `enable_grad`, ...
# `.backward()` and `.grad` are not listed: a student's own layer class may well have a backward
# method, and without a graph (grad mode is off) tensor.backward() cannot work anyway.
AUTOGRAD_NAMES = (
    "torch.autograd",
    "torch.enable_grad",
    "torch.set_grad_enabled",
    "torch._C._set_grad_enabled",
    "torch.func",
    "functorch",
    "torch.ops",  # aten's backward kernels (torch.ops.aten.gelu_backward and friends)
    "torch._softmax_backward_data",
    "torch._log_softmax_backward_data",
)

_CELL_SPLIT = re.compile(r"^# %% .*$", re.MULTILINE)
_LINE_SUFFIX = re.compile(r" \(line \d+\)$")


def _top_level_statements(source):
    """Every top-level statement of the submission, cell by cell when the whole does not parse."""
    try:
        return list(ast.parse(source).body)
    except SyntaxError:
        pass
    statements = []
    for chunk in _CELL_SPLIT.split(source):
        try:
            statements.extend(ast.parse(chunk).body)
        except SyntaxError:  # a broken cell defines nothing when it runs either
            pass
    return statements


def _bound_names(statement):
    """Top-level names a statement binds."""
    if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return {statement.name}
    if isinstance(statement, (ast.Import, ast.ImportFrom)):
        return {(alias.asname or alias.name).split(".")[0] for alias in statement.names}
    return {node.id for node in ast.walk(statement) if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store)}


def _global_names(statement):
    """Names a statement reads that it does not bind itself (over-approximating what is local)."""
    local = set()
    for node in ast.walk(statement):
        if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            local.add(node.id)
        elif isinstance(node, ast.arg):
            local.add(node.arg)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node is not statement:
            local.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            local.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
    read = {node.id for node in ast.walk(statement) if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load)}
    return read - local


def _imported_path(statement, alias):
    """The dotted path of what an import alias binds: `import torch.autograd` binds torch only."""
    if isinstance(statement, ast.ImportFrom):
        return f"{statement.module}.{alias.name}" if statement.module else alias.name
    return alias.name if alias.asname else alias.name.split(".")[0]


def graded_code(source, names=GRADED):
    """(name, code) for the statements defining `names` and every top-level definition they use, transitively.

    A function, class or assignment comes as its own source. An import comes as one `import` line
    per prefix of the path of the name used (`from torch.autograd import grad as vjp` gives `import
    torch`, `import torch.autograd`, `import torch.autograd.grad`), so a search sees every part of
    the path, and only for the names the graded code uses: `import torch.autograd` in a demo cell
    binds `torch`, and stays out.
    """
    statements = _top_level_statements(source)
    binders = {}
    for statement in statements:
        for name in _bound_names(statement):
            binders.setdefault(name, []).append(statement)
    included, todo, seen = [], list(names), set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for statement in binders.get(name, []):
            if isinstance(statement, (ast.Import, ast.ImportFrom)):
                paths = [
                    _imported_path(statement, alias)
                    for alias in statement.names
                    if (alias.asname or alias.name).split(".")[0] == name
                ]
                parts = [path.split(".") for path in paths]
                lines = ["import " + ".".join(part[:end]) for part in parts for end in range(1, len(part) + 1)]
                included.append((name, "\n".join(lines)))
            elif not any(statement is other for _, other in included):
                included.append((name, statement))
                todo.extend(_global_names(statement))
    return [(name, code if isinstance(code, str) else ast.unparse(code)) for name, code in included]


def _mlp_reference(params, x, targets):
    leaves = {name: p.clone().requires_grad_(True) for name, p in params.items()}
    logits = F.linear(F.gelu(F.linear(x, leaves["W1"], leaves["b1"])), leaves["W2"], leaves["b2"])
    loss = F.cross_entropy(logits, targets)
    loss.backward()
    return loss.detach(), {name: leaf.grad for name, leaf in leaves.items()}


def _pick(result, key):
    """result[key], or None when the result does not have that shape (the comparison then says so)."""
    try:
        return result[key]
    except (TypeError, KeyError, IndexError, SubmissionError):
        return None


def _run_without_autograd(submission, device):
    """Each backward function matches autograd's gradient (computed here) with grad mode on, then with it off."""
    dtype = torch.float64
    x = torch.randn(5, 4, dtype=dtype, device=device)
    weight = torch.randn(3, 4, dtype=dtype, device=device)
    grad_out = torch.randn(5, 3, dtype=dtype, device=device)
    targets = torch.randint(0, 3, (5,), device=device)
    params = {
        "W1": torch.randn(6, 4, dtype=dtype, device=device) / 2,
        "b1": torch.randn(6, dtype=dtype, device=device),
        "W2": torch.randn(3, 6, dtype=dtype, device=device) / math.sqrt(6),
        "b2": torch.randn(3, dtype=dtype, device=device),
    }

    x_leaf, weight_leaf = x.clone().requires_grad_(True), weight.clone().requires_grad_(True)
    F.linear(x_leaf, weight_leaf).backward(grad_out)
    logits_leaf = grad_out.clone().requires_grad_(True)  # grad_out doubles as a (5, 3) batch of logits
    F.cross_entropy(logits_leaf, targets).backward()
    act_leaf = x.clone().requires_grad_(True)
    F.gelu(act_leaf).backward(x.flip(0))
    relu_leaf = x.clone().requires_grad_(True)
    F.relu(relu_leaf).backward(x.flip(0))
    _, mlp_grads = _mlp_reference(params, x, targets)

    calls = (
        (
            "grad_weight of linear_backward",
            "linear_matches_autograd",
            lambda: _pick(submission.linear_backward(grad_out, x, weight), 1),
            weight_leaf.grad,
        ),
        ("relu_backward", "relu_matches_autograd", lambda: submission.relu_backward(x.flip(0), x), relu_leaf.grad),
        ("gelu_backward", "gelu_matches_autograd", lambda: submission.gelu_backward(x.flip(0), x), act_leaf.grad),
        (
            "softmax_cross_entropy_backward",
            "cross_entropy_backward_matches_autograd",
            lambda: submission.softmax_cross_entropy_backward(grad_out, targets),
            logits_leaf.grad,
        ),
        (
            "the gradient of W1 from mlp_loss_and_grads",
            "mlp_gradients_match_autograd",
            lambda: _pick(_pick(submission.mlp_loss_and_grads(params, x, targets, activation="gelu"), 1), "W1"),
            mlp_grads["W1"],
        ),
    )
    # First with autograd on, as everywhere else: a gradient that is simply wrong is not this check's business.
    for name, check, call, expected in calls:
        try:
            assert_tensor_close(call(), expected, what=name)
        except (AssertionError, SubmissionError) as failure:
            detail = f"{failure.type_name}: {failure.message}" if isinstance(failure, SubmissionError) else str(failure)
            raise AssertionError(
                f"this check needs a working {name} first (see {check}); with autograd on it does not match "
                f"autograd's gradient yet: {detail}"
            ) from None

    torch_there = submission.module("torch")
    was_enabled = torch_there.is_grad_enabled()
    torch_there.set_grad_enabled(False)  # called as a function, it switches the mode until set again
    try:
        for name, _, call, expected in calls:
            what = f"{name} with autograd switched off (torch.set_grad_enabled(False))"
            try:
                got = call()
            except SubmissionError as error:
                raise AssertionError(
                    f"{what}: expected the same gradient as with autograd on, got {error.type_name}: "
                    f"{error.message}. Likely cause: the function builds a graph and calls .backward() or "
                    "torch.autograd, which has no graph to walk when autograd is off. Compute the gradient from "
                    "its formula instead."
                ) from None
            assert_tensor_close(
                got,
                expected,
                what=what,
                hint="the result changes when autograd is off, so it depends on autograd: compute the gradient "
                "from its formula, by hand.",
            )
    finally:
        torch_there.set_grad_enabled(was_enabled)


def test_no_autograd(submission, submission_source, device):
    # No points for an empty notebook: the backward functions must work first, with autograd off.
    _run_without_autograd(submission, device)

    found = []
    for name, code in graded_code(submission_source):
        # find_calls numbers lines of the re-printed definition, not of the cell: name the definition instead.
        found += [f"{_LINE_SUFFIX.sub('', hit)} in {name}" for hit in find_calls(code, list(AUTOGRAD_NAMES))]
    assert not found, (
        f"expected gradients computed by hand, but the graded functions (or helpers they use) reach for "
        f"autograd: {', '.join(found)}. Write each backward from its formula; keep autograd to the demo cells, "
        "where comparing with it is the point."
    )
