"""The lab manifest (lab.yaml): its schema, and errors that say which key is wrong and how to fix it."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from grader.catalog import GAPS
from grader.errors import LabFormatError

LAB_ID = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
CHECK_ID = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class _Strict(BaseModel):
    # A typo in a key ("hint:" for "hints:") must be an error, not silently ignored.
    model_config = ConfigDict(extra="forbid", frozen=True)


class Limits(_Strict):
    wall_time_s: float = Field(120, gt=0, description="whole grading run")
    call_timeout_s: float = Field(30, gt=0, description="one call into the submission")
    memory_mb: int = Field(4096, ge=256, description="submission process memory")
    grade_budget_s: float = Field(30, gt=0, description="labs validate: solution grading time")


class CheckSpec(_Strict):
    id: str = Field(description="check function name without the leading 'test_'")
    title: str
    points: float = Field(ge=0)
    free: bool = False  # allowed to pass on the starter (e.g. "the notebook runs")

    @field_validator("id")
    @classmethod
    def _id_is_identifier(cls, value: str) -> str:
        if not CHECK_ID.match(value):
            raise ValueError(f"{value!r} is not a Python identifier; use the test function's name without 'test_'")
        return value


class LabSpec(_Strict):
    id: str
    title: str
    summary: str
    version: str
    gaps: list[str] = Field(default_factory=list)
    checkpoints: list[str] = Field(default_factory=list)
    topics: list[str] = Field(default_factory=list)
    difficulty: Literal["intro", "intermediate", "advanced"]
    minutes: int = Field(gt=0)
    devices: list[Literal["cpu", "cuda"]] = Field(default_factory=lambda: ["cpu"])
    preload: list[str] = Field(default_factory=lambda: ["torch", "numpy"])
    limits: Limits = Field(default_factory=Limits)
    hints: list[str] = Field(default_factory=list)
    checks: list[CheckSpec]

    @field_validator("id")
    @classmethod
    def _lab_id(cls, value: str) -> str:
        if not LAB_ID.match(value):
            raise ValueError(f"{value!r} is not a lab id: use lowercase words joined by hyphens, e.g. 'kv-cache-math'")
        return value

    @field_validator("gaps", mode="before")
    @classmethod
    def _gap_ids(cls, value: object) -> object:
        if not isinstance(value, list):
            return value
        normalised = []
        for item in value:
            text = f"{item:03d}" if isinstance(item, int) else str(item)
            if text not in GAPS:
                raise ValueError(f"{item!r} is not a gap id of the catalog: use three digits from '001' to '100'")
            normalised.append(text)
        return normalised

    @field_validator("version", mode="before")
    @classmethod
    def _version_text(cls, value: object) -> object:
        return str(value) if isinstance(value, (int, float)) else value

    @model_validator(mode="after")
    def _unique_checks(self) -> LabSpec:
        seen: set[str] = set()
        for check in self.checks:
            if check.id in seen:
                raise ValueError(f"check id {check.id!r} appears twice in 'checks'")
            seen.add(check.id)
        if not self.checks:
            raise ValueError("'checks' is empty: a lab needs at least one check")
        return self

    @property
    def max_points(self) -> float:
        return sum(check.points for check in self.checks)

    def check(self, check_id: str) -> CheckSpec | None:
        return next((check for check in self.checks if check.id == check_id), None)


def _key_path(location: tuple) -> str:
    path = ""
    for part in location:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "(top level)"


def _fix_for(error: dict) -> str:
    kind = error["type"]
    if kind == "missing":
        return "add this key (see docs/check-api.md for the lab.yaml schema)"
    if kind == "extra_forbidden":
        return "remove this key or fix its spelling (see docs/check-api.md for the allowed keys)"
    if kind == "literal_error":
        return f"use one of the allowed values ({error.get('ctx', {}).get('expected', '')})"
    return "correct the value (see docs/check-api.md for the lab.yaml schema)"


def parse_lab_spec(data: object, *, source: str) -> LabSpec:
    """Validate already-parsed YAML; errors name `source`, the key, the problem and the fix."""
    if not isinstance(data, dict):
        raise LabFormatError(
            f"lab.yaml must be a mapping of keys to values, got {type(data).__name__}",
            where=source,
            fix="start the file with keys such as 'id:', 'title:', 'checks:'",
        )
    try:
        return LabSpec.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        problems = "; ".join(f"{_key_path(e['loc'])}: {e['msg']}" for e in exc.errors()[:5])
        raise LabFormatError(
            f"lab.yaml is invalid: {problems}",
            where=f"{source}, key '{_key_path(first['loc'])}'",
            fix=_fix_for(first),
        ) from None


def load_lab_spec(path: Path) -> LabSpec:
    """Read and validate `path` (a lab.yaml)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise LabFormatError("the lab has no lab.yaml", where=str(path), fix="create it (`labs new <id>` scaffolds one)") from None
    except UnicodeDecodeError as exc:
        raise LabFormatError(f"lab.yaml is not UTF-8 text ({exc.reason} at byte {exc.start})", where=str(path), fix="save it as UTF-8") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}, line {mark.line + 1}, column {mark.column + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        raise LabFormatError(f"lab.yaml is not valid YAML: {problem}", where=where, fix="fix the YAML syntax at that line (indentation, a missing ':' or quote)") from None
    spec = parse_lab_spec(data, source=str(path))
    if spec.id != path.parent.name:
        raise LabFormatError(
            f"lab.yaml says id {spec.id!r} but the folder is named {path.parent.name!r}",
            where=f"{path}, key 'id'",
            fix="make the id and the folder name the same",
        )
    return spec
