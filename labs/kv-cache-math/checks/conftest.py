"""Trusted fixtures of the kv-cache-math checks: the lab's own tinygpt, loaded in the grader."""

from __future__ import annotations

import importlib.util
import sys

import pytest

_LOADED: dict = {}  # path -> module: load once per grading run, whatever the fixture scopes


@pytest.fixture
def trusted_tinygpt(lab_dir):
    """The lab's `public/tinygpt.py` imported into the grading process under a private name.

    The submission has its own copy; this one is out of the student's reach, so reference logits
    and the recomputation baseline computed with it are trusted.
    """
    path = lab_dir / "public" / "tinygpt.py"
    if path in _LOADED:
        return _LOADED[path]
    spec = importlib.util.spec_from_file_location("_kv_cache_math_trusted_tinygpt", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it executes
    spec.loader.exec_module(module)
    _LOADED[path] = module
    return module
