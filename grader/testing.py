"""Helpers for check authors: comparisons whose failure messages teach, and source inspection.

They build on `torch.testing.assert_close` (which already reports mismatched elements and the
greatest differences) and add what a student needs first: the shape or dtype that is off, NaNs,
and the likely cause the check author knows.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable, Sequence
from typing import Any

import torch

# Tolerances per dtype: loose enough for a correct but differently ordered computation (sums in
# another order, a max subtracted or not), tight enough to catch a wrong scale or a wrong mask.
_TOLERANCES = {
    torch.float64: (1e-7, 1e-9),
    torch.float32: (1e-4, 1e-5),
    torch.float16: (1e-2, 1e-3),
    torch.bfloat16: (2e-2, 1e-2),
}


def tolerances(dtype: torch.dtype) -> tuple[float, float]:
    """(rtol, atol) for comparing results computed in `dtype`."""
    return _TOLERANCES.get(dtype, (0.0, 0.0))


def _describe(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"tensor of shape {tuple(value.shape)} and dtype {value.dtype}"
    return f"{type(value).__name__}"


def expect_tensor(got: Any, *, shape: Sequence[int] | None = None, dtype: torch.dtype | None = None,
                  what: str = "the result", hint: str | None = None) -> torch.Tensor:
    """Assert that `got` is a tensor (of `shape` and `dtype` when given) and return it."""
    suffix = f" {hint}" if hint else ""
    if not isinstance(got, torch.Tensor):
        raise AssertionError(f"{what}: expected a tensor, got {_describe(got)}.{suffix}")
    if shape is not None and tuple(got.shape) != tuple(shape):
        raise AssertionError(f"{what}: expected shape {tuple(shape)}, got {tuple(got.shape)}.{suffix}")
    if dtype is not None and got.dtype != dtype:
        raise AssertionError(f"{what}: expected dtype {dtype}, got {got.dtype}: keep the input's dtype "
                             f"(no hard-coded .float() or torch.float32 tensors).{suffix}")
    return got


def assert_tensor_close(got: Any, expected: torch.Tensor, *, what: str = "the result", hint: str | None = None,
                        rtol: float | None = None, atol: float | None = None, mask: torch.Tensor | None = None) -> None:
    """Assert `got` matches `expected` within the dtype's tolerances (or the ones given).

    `mask` (bool, broadcastable) limits the comparison to the positions that are graded, e.g. rows
    of attention that have at least one allowed key.
    """
    expect_tensor(got, shape=tuple(expected.shape), dtype=expected.dtype, what=what, hint=hint)
    if got.device != expected.device:
        got = got.to(expected.device)
    default_rtol, default_atol = tolerances(expected.dtype)
    rtol = default_rtol if rtol is None else rtol
    atol = default_atol if atol is None else atol
    if mask is not None:
        mask = mask.expand(expected.shape)
        got, expected = got[mask], expected[mask]
    suffix = f"\nLikely cause: {hint}" if hint else ""
    bad_got = ~torch.isfinite(got) & torch.isfinite(expected) if got.is_floating_point() else None
    if bad_got is not None and bool(bad_got.any()):
        count = int(bad_got.sum())
        raise AssertionError(f"{what}: {count} value(s) are NaN or infinite where the reference is finite "
                             f"(overflow in exp? a row with every position masked?).{suffix}")
    try:
        torch.testing.assert_close(got, expected, rtol=rtol, atol=atol, equal_nan=True)
    except AssertionError as exc:
        diff = (got.double() - expected.double()).abs()
        worst = float(diff.max()) if diff.numel() else 0.0
        raise AssertionError(f"{what} differs from the reference (max abs error {worst:.3g}, "
                             f"rtol={rtol:g}, atol={atol:g}).\n{_first_lines(str(exc), 4)}{suffix}") from None


def _first_lines(text: str, count: int) -> str:
    return "\n".join(text.strip().splitlines()[:count])


def assert_equal(got: Any, expected: Any, *, what: str = "the result", hint: str | None = None) -> None:
    """Exact equality for plain data (ints, strings, lists) with a message that shows both values."""
    if type(got) is not type(expected) and not (isinstance(got, (int, float)) and isinstance(expected, (int, float))
                                                and not isinstance(got, bool)):
        raise AssertionError(f"{what}: expected a {type(expected).__name__} ({expected!r}), got {_describe(got)} ({got!r})"
                             + (f". {hint}" if hint else ""))
    if got != expected:
        raise AssertionError(f"{what}: expected {expected!r}, got {got!r}" + (f". Likely cause: {hint}" if hint else ""))


# -- source inspection ---------------------------------------------------------------------------
_CELL_SPLIT = re.compile(r"^# %% .*$", re.MULTILINE)


def _parse_chunks(source: str) -> Iterable[tuple[int, ast.AST]]:
    try:
        yield 0, ast.parse(source)
        return
    except SyntaxError:
        pass
    offset = 0
    for chunk in _CELL_SPLIT.split(source):  # a cell that does not parse is skipped, the rest are searched
        try:
            yield offset, ast.parse(chunk)
        except SyntaxError:
            pass
        offset += chunk.count("\n") + 1


def find_calls(source: str, names: Iterable[str]) -> list[str]:
    """Where the submission's code uses any of `names`, found on the grading side (the submission
    cannot switch it off).

    A plain name ("MultiheadAttention") matches a name, an attribute, an import or a string that is
    exactly that name. A dotted name ("F.scaled_dot_product_attention") matches only an attribute
    access or an import of its last part (whatever the module is called), or that exact string, so
    a student's own function of the same name is not flagged. Names built at run time from pieces
    ("scaled_" + "dot...") are not seen; checks that matter should also compare behaviour.
    """
    plain, attributes = set(), set()
    for name in names:
        (attributes if "." in name else plain).add(name.rsplit(".", 1)[-1])
    found = []
    for offset, tree in _parse_chunks(source):
        for node in ast.walk(tree):
            hit = None
            if isinstance(node, ast.Name) and node.id in plain:
                hit = node.id
            elif isinstance(node, ast.Attribute) and (node.attr in plain or node.attr in attributes):
                hit = node.attr
            elif isinstance(node, ast.alias) and node.name.split(".")[-1] in plain | attributes:
                hit = node.name
            elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[-1] in plain | attributes:
                hit = node.module  # `from torch.autograd import grad` when "torch.autograd" is forbidden
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in plain | attributes:
                hit = node.value
            if hit is not None:
                line = getattr(node, "lineno", 0) + offset
                found.append(f"{hit} (line {line})" if line else hit)
    return sorted(set(found))


# -- the lab's own helper modules, on the grading side ------------------------------------------
def trusted_public_module(lab_dir, name: str):
    """The grading side's own copy of `<lab>/public/<name>.py` (a tiny model, a data generator).

    The submission imports its copy from its working folder and may have changed it; references
    computed with this copy are out of its reach. Loaded once per grading process, under a private
    module name (registered in sys.modules, which dataclasses need while the module executes).
    """
    import importlib.util
    import sys
    from pathlib import Path

    qualified = f"_gaplabs_trusted_{Path(lab_dir).name.replace('-', '_')}_{name}"
    if qualified not in sys.modules:
        spec = importlib.util.spec_from_file_location(qualified, Path(lab_dir) / "public" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[qualified] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[qualified]
            raise
    return sys.modules[qualified]
