"""Fit on train only: changing the evaluation rows may not change anything learned from the training rows.

`prepare_matrix(features, labels, train_rows)` is called on the same training rows with two
different sets of evaluation rows: different rows, with their labels flipped, and once with the
evaluation labels unknown (NaN). The training rows must come out the same every time, and an
evaluation row present in both sets must be transformed the same way. Training and evaluation
rows are interleaved, so `train_rows` is the only way to know which rows are training rows.

Then the same property end to end: `validate` run twice, with the validation rows' labels
flipped the second time, must give the same validation scores when it picks the same split.
"""

from __future__ import annotations

import numpy as np

from grader.channel import SubmissionError

SEED = 5202
N_CUSTOMERS = 400
LIKELY_CAUSE = (
    "Likely cause: a statistic learned from every row: the churn rate per postcode (target encoding) computed "
    "with all labels, or a StandardScaler fitted before selecting the training rows. Fit each statistic on "
    "features.iloc[train_rows] and labels[train_rows] only, then transform every row with it."
)


def _rows_differ(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return ~np.isclose(a, b, rtol=1e-9, atol=1e-9, equal_nan=True).all(axis=1)


def test_fit_on_train_only(submission, churn, remote, helpers):
    data = churn.make_churn_data(seed=SEED, n_customers=N_CUSTOMERS)
    customers, events, snapshots = data.development_view()
    labels = snapshots["churned"].to_numpy(dtype=float)
    customer_of = snapshots["customer_id"].to_numpy()
    features = submission.build_features(remote.frame(customers), remote.frame(events), remote.frame(snapshots))
    helpers.read_features(features, len(snapshots))

    # Training rows: the rows of 60% of the customers. Two evaluation sets that overlap by about half.
    rng = np.random.default_rng(SEED)
    ids = np.unique(customer_of)
    train_ids = rng.choice(ids, int(0.6 * len(ids)), replace=False)
    train = rng.permutation(np.flatnonzero(np.isin(customer_of, train_ids)))
    pool = np.setdiff1d(np.arange(len(snapshots)), train)
    eval_a = rng.choice(pool, len(pool) // 2, replace=False)   # in random order
    eval_b = rng.choice(pool, len(pool) // 2, replace=False)

    # The training rows sit at the same (scattered) positions, in the same order, in every call: an
    # out-of-fold encoding may depend on that order, and must still get the same folds each time.
    n_total = len(train) + len(eval_a)
    train_slots = np.sort(rng.choice(n_total, len(train), replace=False))
    is_eval = ~np.isin(np.arange(n_total), train_slots)

    def call(eval_rows, eval_labels):
        """prepare_matrix on the training rows plus `eval_rows`; rows of the result by original row."""
        rows = np.empty(n_total, dtype=np.int64)
        rows[train_slots] = train
        rows[is_eval] = eval_rows
        row_labels = labels[rows].copy()
        row_labels[is_eval] = eval_labels(rows[is_eval])
        subset = features[rows] if isinstance(features, np.ndarray) else features.iloc[rows].reset_index(drop=True)
        matrix = helpers.read_matrix(submission.prepare_matrix(subset, row_labels, np.flatnonzero(~is_eval)),
                                     len(rows), "prepare_matrix")
        return {int(r): i for i, r in enumerate(rows)}, matrix

    true_labels = lambda rows: labels[rows]          # noqa: E731
    flipped_labels = lambda rows: 1.0 - labels[rows]  # noqa: E731
    unknown_labels = lambda rows: np.full(len(rows), np.nan)  # noqa: E731

    where_a, matrix_a = call(eval_a, true_labels)
    where_again, matrix_again = call(eval_a, true_labels)
    at_a, at_again = [where_a[r] for r in train], [where_again[r] for r in train]
    if _rows_differ(matrix_a[at_a], matrix_again[at_again]).any():
        raise AssertionError(
            "expected: prepare_matrix gives the same matrix for the same inputs. Got: two identical calls gave "
            "different training rows. Likely cause: randomness without a fixed seed (the folds of an out-of-fold "
            "encoding, a TargetEncoder without random_state). Use np.random.default_rng(0) or random_state=0.")

    where_b, matrix_b = call(eval_b, flipped_labels)
    at_b = [where_b[r] for r in train]
    if matrix_b.shape[1] != matrix_a.shape[1]:
        raise AssertionError(f"expected the same columns whatever the evaluation rows are. Got {matrix_a.shape[1]} columns "
                             f"with one evaluation set and {matrix_b.shape[1]} with another. {LIKELY_CAUSE}")
    moved = _rows_differ(matrix_a[at_a], matrix_b[at_b])
    if moved.any():
        first = train[np.flatnonzero(moved)[0]]
        column = int(np.flatnonzero(_rows_differ(matrix_a[[where_a[first]]].T, matrix_b[[where_b[first]]].T))[0])
        raise AssertionError(
            f"expected: the training rows are transformed the same way whatever the evaluation rows are. Got: with "
            f"other evaluation rows (and their labels flipped) {moved.sum()} of {len(train)} training rows changed; "
            f"e.g. column {column} of one row went from {matrix_a[where_a[first], column]:.6g} to "
            f"{matrix_b[where_b[first], column]:.6g}. {LIKELY_CAUSE}")

    both = np.intersect1d(eval_a, eval_b)
    moved = _rows_differ(matrix_a[[where_a[r] for r in both]], matrix_b[[where_b[r] for r in both]])
    if moved.any():
        raise AssertionError(
            f"expected: an evaluation row is transformed with what was learned from the training rows only. Got: "
            f"{moved.sum()} of {len(both)} evaluation rows present in both calls changed when the other evaluation "
            f"rows and their labels changed. {LIKELY_CAUSE} (The transform of a row may not use its own label or "
            f"statistics of the other evaluation rows either.)")

    try:
        where_c, matrix_c = call(eval_a, unknown_labels)
    except SubmissionError as error:
        raise AssertionError(
            f"expected: prepare_matrix works when the labels of the rows outside train_rows are NaN (unknown, as in "
            f"production). Got: your code raised {error.type_name}: {error.message}. Likely cause: the labels of "
            f"every row are read or converted (labels.astype(int), an encoder fitted on all labels); use "
            f"labels[train_rows] only.") from None
    moved = _rows_differ(matrix_a[at_a], matrix_c[[where_c[r] for r in train]])
    if moved.any():
        raise AssertionError(
            f"expected: the training rows do not depend on the evaluation labels. Got: {moved.sum()} of {len(train)} "
            f"training rows changed when the evaluation labels became unknown (NaN). {LIKELY_CAUSE}")

    # End to end: the validation scores may not depend on the validation labels.
    n_rows = len(snapshots)
    train_1, valid_1, scores_1 = helpers.read_validation(
        submission.validate(remote.frame(customers), remote.frame(events), remote.frame(snapshots)), n_rows)
    relabelled = snapshots.copy()
    relabelled.loc[valid_1, "churned"] = 1 - relabelled.loc[valid_1, "churned"]
    train_2, valid_2, scores_2 = helpers.read_validation(
        submission.validate(remote.frame(customers), remote.frame(events), remote.frame(relabelled)), n_rows)
    same_split = np.array_equal(train_1, train_2) and np.array_equal(valid_1, valid_2)
    # A split that stratifies on the labels legitimately moves when they change: then there is nothing to compare.
    if same_split and not np.allclose(scores_1, scores_2, rtol=1e-9, atol=1e-9):
        raise AssertionError(
            "expected: validate's validation scores do not depend on the validation labels. Got: flipping the labels "
            "of the validation rows (same split) changed the validation scores. Likely cause: the features are "
            "encoded or scaled on all rows before the split (prepare_matrix(features, labels, all rows), or a target "
            "encoding in build_features); split first, then pass the training rows to prepare_matrix.")
