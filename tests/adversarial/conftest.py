"""Fixtures of the adversarial suite: scratch folders per test module and copies of the real lab."""

from __future__ import annotations

import pytest

from tests.adversarial.harness import LAB_DIR, SOLUTION, copy_lab

# Timing attacks run on a copy of the real lab whose limits are tighter, so that an infinite loop
# costs seconds instead of the lab's 20 s per call and 60 s per run. Checks and solution are the
# real lab's files.
TIGHT_LIMITS = {"call_timeout_s": 6, "wall_time_s": 50, "memory_mb": 1024}


@pytest.fixture(scope="session", autouse=True)
def _real_lab_is_ready():
    if not (LAB_DIR / "lab.yaml").is_file() or not SOLUTION.is_file():
        pytest.skip("the real lab attention-from-scratch (lab and solution) is not in this tree")


@pytest.fixture(scope="module")
def scratch(tmp_path_factory, request):
    """A scratch folder shared by the tests of one module (their graded runs are shared too)."""
    return tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1])


@pytest.fixture(scope="session")
def tight_pack(tmp_path_factory):
    """A pack root holding the real lab with TIGHT_LIMITS."""
    return copy_lab(tmp_path_factory.mktemp("tight-pack"), limits=TIGHT_LIMITS)
