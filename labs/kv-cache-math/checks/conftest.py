"""Trusted fixtures of the kv-cache-math checks: the lab's own tinygpt, loaded in the grader."""

from __future__ import annotations

import pytest

from grader.testing import trusted_public_module


@pytest.fixture
def trusted_tinygpt(lab_dir):
    """The lab's `public/tinygpt.py` imported into the grading process under a private name.

    The submission has its own copy; this one is out of the student's reach, so reference logits
    and the recomputation baseline computed with it are trusted.
    """
    return trusted_public_module(lab_dir, "tinygpt")
