"""Trusted helpers of the leakage-bug checks: the lab's data generator, frames sent to the submission, AUC intervals.

`churn_data.py` is imported here from the lab folder, not from the submission's copy, so the data,
the labels and the replay of the future period are the lab's, whatever the notebook does to its
own copy. Tables cross the isolation channel as plain columns (numbers as arrays, text as lists of
strings) and are rebuilt as DataFrames by the submission's own pandas; what comes back is read as
a float matrix plus text columns. No number the submission reports about itself enters an AUC:
the checks take its scores and compute every AUC from the labels they hold.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from grader.channel import RemoteObject
from grader.testing import trusted_public_module


def _load_churn_data(lab_dir):
    return trusted_public_module(lab_dir, "churn_data")


@pytest.fixture(scope="session")
def churn(lab_dir):
    """The lab's churn_data module, trusted copy."""
    return _load_churn_data(lab_dir)


class Remote:
    """Sends DataFrames to the submission and reads its answers back as plain numbers."""

    def __init__(self, submission):
        self.submission = submission
        self._sent: dict[int, tuple[pd.DataFrame, RemoteObject]] = {}  # keeps the frame alive, so its id stays unique

    def frame(self, df: pd.DataFrame) -> RemoteObject:
        """The same table as a DataFrame in the submission process (sent once per frame object)."""
        cached = self._sent.get(id(df))
        if cached is not None and cached[0] is df:
            return cached[1]
        columns = {}
        for name in df.columns:
            column = df[name]
            if pd.api.types.is_numeric_dtype(column):
                columns[str(name)] = column.to_numpy()
            else:
                columns[str(name)] = column.astype(str).tolist()
        remote = self.submission.module("pandas").DataFrame(columns)
        self._sent[id(df)] = (df, remote)
        return remote


@pytest.fixture(scope="module")
def remote(submission):
    """Per check module: a handle belongs to one submission process, and a crash starts a new one."""
    return Remote(submission)


class FeatureTable:
    """A feature frame from the submission: its numeric columns as floats, its other columns as text."""

    def __init__(self, numeric: np.ndarray, numeric_names: list[str], text: list[list[str]], text_names: list[str]):
        self.numeric = numeric          # (n_rows, n_numeric) float64
        self.numeric_names = numeric_names
        self.text = text                # n_rows lists of n_text strings
        self.text_names = text_names

    @property
    def n_rows(self) -> int:
        return self.numeric.shape[0]

    def row_differences(self, other: FeatureTable, rows: np.ndarray) -> tuple[np.ndarray, list[str]]:
        """Which of `rows` differ between the two tables, and for the first one, a description of how."""
        a, b = self.numeric[rows], other.numeric[rows]
        same = np.isclose(a, b, rtol=1e-9, atol=1e-9, equal_nan=True)
        moved = ~same.all(axis=1)
        text_moved = np.array([self.text[r] != other.text[r] for r in rows], dtype=bool) if self.text_names else np.zeros(len(rows), bool)
        moved |= text_moved
        details = []
        if moved.any():
            first = int(np.flatnonzero(moved)[0])
            row = rows[first]
            for j in np.flatnonzero(~same[first]):
                details.append(f"'{self.numeric_names[j]}' was {a[first, j]:g}, became {b[first, j]:g}")
            for j, name in enumerate(self.text_names):
                if self.text[row][j] != other.text[row][j]:
                    details.append(f"'{name}' was {self.text[row][j]!r}, became {other.text[row][j]!r}")
        return moved, details


def read_features(result, n_rows: int, what: str = "build_features") -> FeatureTable:
    """Read a feature frame (or a numeric array) returned by the submission."""
    if isinstance(result, np.ndarray):
        matrix = result.astype(np.float64).reshape(len(result), -1)
        table = FeatureTable(matrix, [f"column {j}" for j in range(matrix.shape[1])], [[] for _ in range(len(matrix))], [])
    elif isinstance(result, RemoteObject):
        length = len(result)
        numeric = result.select_dtypes(include=["number", "bool"])
        names = [str(name) for name in numeric.columns.tolist()]
        matrix = numeric.to_numpy(dtype="float64") if names else np.zeros((length, 0))
        other = result.select_dtypes(exclude=["number", "bool"])
        text_names = [str(name) for name in other.columns.tolist()]
        text = other.astype("str").to_numpy().tolist() if text_names else [[] for _ in range(length)]
        table = FeatureTable(np.asarray(matrix, dtype=np.float64).reshape(length, len(names)), names, text, text_names)
    else:
        raise AssertionError(f"{what} returned a {type(result).__name__}; expected a pandas DataFrame with one row per "
                             "snapshot row")
    if table.n_rows != n_rows:
        raise AssertionError(f"{what} returned {table.n_rows} rows for {n_rows} snapshot rows; expected exactly one row "
                             "per snapshot row, in the same order (a merge that duplicates or drops rows? a groupby "
                             "that collapses them?)")
    return table


def read_matrix(result, n_rows: int, what: str) -> np.ndarray:
    """A 2-D float matrix returned by the submission (a numpy array, or a DataFrame read through its handle)."""
    if isinstance(result, RemoteObject):
        result = result.to_numpy(dtype="float64")
    if not isinstance(result, np.ndarray):
        raise AssertionError(f"{what} returned a {type(result).__name__}; expected a float numpy array of shape "
                             f"({n_rows}, n_columns)")
    matrix = result.astype(np.float64)
    if matrix.ndim == 1:
        matrix = matrix[:, None]
    if matrix.ndim != 2 or matrix.shape[0] != n_rows:
        raise AssertionError(f"{what} returned an array of shape {tuple(result.shape)}; expected ({n_rows}, n_columns): "
                             "one row per row of the features, in the same order")
    return matrix


def read_positions(result, n_rows: int, what: str) -> np.ndarray:
    """Row positions returned by the submission: integer positions, or a boolean mask of length n_rows."""
    if isinstance(result, RemoteObject):
        result = list(result)
    values = np.asarray(result)
    if values.dtype == bool and values.shape == (n_rows,):
        return np.flatnonzero(values)
    if values.size == 0:
        return values.astype(np.int64)
    if values.ndim != 1 or values.dtype.kind not in "iu":
        raise AssertionError(f"{what} is not a 1-D array of integer row positions (got dtype {values.dtype}, "
                             f"shape {values.shape}); return positions 0..{n_rows - 1}, e.g. np.arange(len(snapshots))[mask]")
    if values.min() < 0 or values.max() >= n_rows:
        raise AssertionError(f"{what} holds positions outside 0..{n_rows - 1} (min {values.min()}, max {values.max()}): "
                             "return positions (0..len-1), not index labels or customer ids")
    if len(np.unique(values)) != len(values):
        raise AssertionError(f"{what} holds the same row more than once")
    return values.astype(np.int64)


def read_scores(result, n_rows: int, what: str) -> np.ndarray:
    """One finite score per row: a numpy array, a list, or a Series read through its handle."""
    if isinstance(result, RemoteObject):
        result = result.to_numpy(dtype="float64")
    try:
        scores = np.asarray(result, dtype=np.float64)
    except (TypeError, ValueError):
        raise AssertionError(f"{what} is a {type(result).__name__}; expected a float array of {n_rows} scores") from None
    if scores.ndim == 2 and scores.shape[1] == 2:
        raise AssertionError(f"{what} has shape {scores.shape}: both columns of predict_proba; return only the churn "
                             "column, model.predict_proba(X)[:, 1]")
    if scores.shape != (n_rows,):
        raise AssertionError(f"{what} has shape {scores.shape}; expected ({n_rows},): one score per row, in order")
    if not np.isfinite(scores).all():
        raise AssertionError(f"{what} holds {int((~np.isfinite(scores)).sum())} NaN or infinite scores; expected finite "
                             "scores (a feature that is NaN for some rows? a division by a zero count?)")
    return scores


def read_validation(result, n_rows: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(train_rows, valid_rows, valid_scores) of what `validate` returned."""
    keys = ("train_rows", "valid_rows", "valid_scores")
    if not isinstance(result, dict) or any(key not in result for key in keys):
        got = sorted(map(str, result)) if isinstance(result, dict) else type(result).__name__
        raise AssertionError(f"validate returned {got}; expected a dict with the keys {list(keys)}")
    train = read_positions(result["train_rows"], n_rows, "validate()['train_rows']")
    valid = read_positions(result["valid_rows"], n_rows, "validate()['valid_rows']")
    scores = read_scores(result["valid_scores"], len(valid), "validate()['valid_scores'] (one per valid row)")
    return train, valid, scores


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC by the rank formula (ties count one half)."""
    from scipy.stats import rankdata

    labels = np.asarray(labels).astype(bool)
    ranks = rankdata(scores)
    n_pos = labels.sum()
    n_neg = len(labels) - n_pos
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def customer_bootstrap_interval(customer_id: np.ndarray, labels: np.ndarray, scores: np.ndarray, n_customers: int,
                                level: float = 0.99, n_boot: int = 400, seed: int = 0) -> tuple[float, float]:
    """Percentile interval of the AUC measured on `n_customers` customers drawn with replacement.

    Customers, not rows, are drawn: rows of one customer are not independent, and a row bootstrap
    would give an interval too narrow. Drawing as many customers as the validation set holds gives
    the spread a validation estimate of that size would have if it came from the future period.
    """
    rng = np.random.default_rng(seed)
    _, inverse = np.unique(customer_id, return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    rows_of = np.split(order, np.cumsum(np.bincount(inverse))[:-1])
    values = []
    for _ in range(n_boot):
        rows = np.concatenate([rows_of[i] for i in rng.integers(0, len(rows_of), n_customers)])
        if 0 < labels[rows].sum() < len(rows):
            values.append(auc(labels[rows], scores[rows]))
    low, high = np.quantile(values, [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)


@pytest.fixture(scope="session")
def helpers():
    """The readers and statistics above, for the check modules (which cannot import this conftest by name)."""
    return SimpleNamespace(read_features=read_features, read_matrix=read_matrix, read_positions=read_positions,
                           read_scores=read_scores, read_validation=read_validation,
                           auc=auc, customer_bootstrap_interval=customer_bootstrap_interval)
