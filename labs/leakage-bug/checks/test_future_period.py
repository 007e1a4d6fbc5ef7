"""The validation estimate predicts production, and production has real skill.

The future period is replayed the way production lives it (churn_data.replay_deployment, trusted
copy): on each future snapshot day `train_and_score` gets only the customers and events the
warehouse held that day. The validation estimate comes from `validate` on the development view.
Both AUCs are computed here from the submission's scores and the labels the check holds.

Agreement: the validation AUC must lie inside the central 99% of the future AUC as measured on as
many customers as the validation set holds (a customer bootstrap), the spread an honest
validation estimate of that size would have. Skill: the future AUC must clear FLOOR, which a
model without features (0.5) and a model on the static columns alone (about 0.6) cannot reach.
"""

from __future__ import annotations

import numpy as np
import pytest

SEED = 7007
LEVEL = 0.99
FLOOR = 0.67


@pytest.fixture(scope="module")
def dataset(churn):
    return churn.make_churn_data(seed=SEED)


@pytest.fixture(scope="module")
def deployment(submission, churn, remote, helpers, dataset):
    def train_and_score(customers, events, train_snapshots, new_snapshots):
        scores = submission.train_and_score(remote.frame(customers), remote.frame(events),
                                            remote.frame(train_snapshots), remote.frame(new_snapshots))
        day = int(new_snapshots["cutoff"].iloc[0])
        return helpers.read_scores(scores, len(new_snapshots), f"train_and_score's scores for day {day}")

    return churn.replay_deployment(dataset, train_and_score)


@pytest.fixture(scope="module")
def validation(submission, remote, helpers, dataset):
    customers, events, snapshots = dataset.development_view()
    result = submission.validate(remote.frame(customers), remote.frame(events), remote.frame(snapshots))
    train, valid, scores = helpers.read_validation(result, len(snapshots))
    return snapshots, train, valid, scores


def _static_baseline_auc(dataset, helpers) -> float:
    """Future AUC of a logistic regression on plan, fee and tenure: what no event feature at all can do."""
    from sklearn.linear_model import LogisticRegression

    def static(snapshots):
        rows = snapshots.merge(dataset.customers, on="customer_id", how="left")
        return np.column_stack([rows["plan"] == "annual", rows["monthly_fee"], np.log1p(rows["cutoff"] - rows["signup_day"])])

    train = dataset.dev_snapshots()
    model = LogisticRegression(max_iter=1000).fit(static(train), train["churned"])
    future = dataset.snapshots[dataset.snapshots["cutoff"].isin(dataset.future_days)]
    return helpers.auc(future["churned"].to_numpy(), model.predict_proba(static(future))[:, 1])


def test_validation_matches_future(validation, deployment, helpers):
    snapshots, train, valid, scores = validation
    labels = snapshots["churned"].to_numpy()[valid]
    assert 0 < labels.sum() < len(labels), (
        f"expected validation rows of both classes. Got {len(labels)} validation rows with {int(labels.sum())} churns: "
        "is the validation set tiny, or chosen by label?")
    customer_of = snapshots["customer_id"].to_numpy()
    shared = np.intersect1d(customer_of[train], customer_of[valid])
    on_both_sides = (f" Also, {len(shared)} customers have rows on both sides of validate's split: the estimate then "
                     "measures customers the model has already studied." if len(shared) else "")

    valid_auc = helpers.auc(labels, scores)
    future_auc = helpers.auc(deployment.churned, deployment.scores)
    n_customers = len(np.unique(customer_of[valid]))
    low, high = helpers.customer_bootstrap_interval(deployment.customer_id, deployment.churned, deployment.scores,
                                                    n_customers, level=LEVEL)
    summary = (f"validation AUC {valid_auc:.3f}; future-period AUC {future_auc:.3f}, whose {LEVEL:.0%} interval on "
               f"{n_customers} customers (your validation set's size) is [{low:.3f}, {high:.3f}]")
    assert valid_auc <= high, (
        f"expected the validation estimate to agree with the future period. Got an optimistic one: {summary}. Offline, "
        "the pipeline sees something production never has. Likely causes: features from events after the cutoff, an "
        f"encoder or scaler fitted on validation rows (or on their labels), the same customer on both sides.{on_both_sides}")
    assert valid_auc >= low, (
        f"expected the validation estimate to agree with the future period. Got a pessimistic one: {summary}. Likely "
        "causes: training rows encoded with their own labels (an in-sample target encoding that the model over-trusts "
        "and that validation rows never get: encode training rows out of fold), or a validation pipeline that differs "
        f"from train_and_score (other features, other preprocessing).{on_both_sides}")
    assert not len(shared), (
        f"expected validate to hold out whole customers. Got {len(shared)} customers with rows in both its training and "
        f"validation rows ({summary}): the agreement is luck, the estimate measures customers the model has already "
        "studied. Split with split_train_valid.")


def test_future_auc_above_floor(deployment, dataset, helpers):
    future_auc = helpers.auc(deployment.churned, deployment.scores)
    if future_auc < FLOOR:
        baseline = _static_baseline_auc(dataset, helpers)
        raise AssertionError(
            f"expected a future-period AUC of at least {FLOOR}. Got {future_auc:.3f}. A model without features scores "
            f"0.5, and one on plan, fee and tenure alone scores {baseline:.3f} here: the skill is in the activity "
            "features (recent logins against earlier ones, support tickets, days since the last event), computed from "
            "the past only. Likely cause: features dropped instead of fixed, or features that are constant or NaN "
            "in production (computed from events after the cutoff, which do not exist yet on the day).")
