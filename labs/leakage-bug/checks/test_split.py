"""Entities, not rows: no customer may have rows on both sides of the split.

`split_train_valid` runs on two datasets: development snapshots in the order the generator makes
them (by month), and another dataset's snapshots sorted by customer, so that a split that happens
to work for one row order (the first 75% of the rows) is caught too.
"""

from __future__ import annotations

import numpy as np

DATASETS = ((6303, 500, "by month"), (6304, 500, "by customer"))


def test_no_customer_on_both_sides(submission, churn, remote, helpers):
    for seed, n_customers, order in DATASETS:
        _, _, snapshots = churn.make_churn_data(seed=seed, n_customers=n_customers).development_view()
        if order == "by customer":
            snapshots = snapshots.sort_values(["customer_id", "cutoff"], kind="stable").reset_index(drop=True)
        n_rows = len(snapshots)
        result = submission.split_train_valid(remote.frame(snapshots))
        if not isinstance(result, (tuple, list)) or len(result) != 2:
            raise AssertionError(f"split_train_valid returned a {type(result).__name__}; expected a pair "
                                 "(train_rows, valid_rows) of integer row positions")
        train = helpers.read_positions(result[0], n_rows, "train_rows")
        valid = helpers.read_positions(result[1], n_rows, "valid_rows")

        overlap = np.intersect1d(train, valid)
        if len(overlap):
            raise AssertionError(f"expected disjoint training and validation rows. Got {len(overlap)} rows on both "
                                 f"sides (snapshots sorted {order}).")
        if len(valid) < 0.1 * n_rows or len(train) < 0.4 * n_rows:
            raise AssertionError(
                f"expected at least 10% of the rows for validation and 40% for training. Got {len(train)} training and "
                f"{len(valid)} validation rows of {n_rows} (snapshots sorted {order}). A tiny validation set gives an "
                "estimate too noisy to agree with anything; use a test share of about 0.2 to 0.3.")

        customer_of = snapshots["customer_id"].to_numpy()
        shared = np.intersect1d(customer_of[train], customer_of[valid])
        if len(shared):
            example = shared[0]
            raise AssertionError(
                f"expected: every customer on one side only. Got {len(shared)} of {len(np.unique(customer_of))} customers "
                f"with rows in both training and validation (snapshots sorted {order}); e.g. customer {example} has "
                f"{np.isin(train, np.flatnonzero(customer_of == example)).sum()} training and "
                f"{np.isin(valid, np.flatnonzero(customer_of == example)).sum()} validation rows. Likely cause: a split of "
                "rows (train_test_split on rows, or a split by time alone, which puts every long-lived customer on "
                "both sides). Split customers: GroupShuffleSplit(...).split(snapshots, groups=snapshots['customer_id']).")
