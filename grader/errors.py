"""User-facing errors: what was wrong, where, and what to do about it."""

from __future__ import annotations


class GaplabsError(Exception):
    """An error the user can fix. The CLI prints it without a traceback and exits with `exit_code`.

    `what` says what was wrong, `where` names the file, key or cell, `fix` says what to do.
    """

    exit_code = 2

    def __init__(self, what: str, *, where: str | None = None, fix: str | None = None):
        super().__init__(what)
        self.what = what
        self.where = where
        self.fix = fix

    def __str__(self) -> str:
        parts = [self.what]
        if self.where:
            parts.append(f"where: {self.where}")
        if self.fix:
            parts.append(f"fix: {self.fix}")
        return "\n".join(parts)


class LabNotFound(GaplabsError):
    """No lab with that id; `fix` carries a did-you-mean suggestion when one is close."""


class LabFormatError(GaplabsError):
    """A lab on disk is malformed (lab.yaml, checks, notebooks, mutants)."""


class NotebookError(GaplabsError):
    """A notebook cannot be read as a Jupyter notebook."""
