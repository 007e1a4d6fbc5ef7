"""Unit tests of the leakage-bug lab's data generator, public/churn_data.py.

The checks rely on it for everything: the same tables for the same seed, snapshots and labels that
mean what the notebook says (active customers, churn within the horizon), events that stop when a
customer leaves, a replay of the future period that hands the pipeline nothing from later days,
and the premise of the lab itself: honest features carry real signal, and the leaky window
(events after the cutoff) carries far more.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from grader.testing import trusted_public_module

PUBLIC = Path(__file__).resolve().parents[2] / "labs" / "leakage-bug" / "public"


def _load_churn_data():
    """The lab's public/ module, loaded the way its checks load it (no clash with other labs)."""
    return trusted_public_module(PUBLIC.parent, "churn_data")


churn_data = _load_churn_data()


@pytest.fixture(scope="module")
def data():
    return churn_data.make_churn_data(seed=3)


@pytest.fixture(scope="module")
def small():
    return churn_data.make_churn_data(seed=5, n_customers=200)


def _events_between(events: pd.DataFrame, customer_ids: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Per row: how many of the customer's events fall in [start, end)."""
    by_customer = {cid: np.sort(group["time"].to_numpy()) for cid, group in events.groupby("customer_id")}
    counts = np.zeros(len(customer_ids))
    for i, (cid, start, end) in enumerate(zip(customer_ids, starts, ends, strict=True)):
        times = by_customer.get(cid, np.empty(0))
        counts[i] = np.searchsorted(times, end) - np.searchsorted(times, start)
    return counts


def test_same_seed_same_tables_other_seed_other_tables():
    first, again = churn_data.make_churn_data(seed=11, n_customers=150), churn_data.make_churn_data(seed=11, n_customers=150)
    for name in ("customers", "events", "snapshots"):
        pd.testing.assert_frame_equal(getattr(first, name), getattr(again, name))
    other = churn_data.make_churn_data(seed=12, n_customers=150)
    assert not first.events["time"].head(100).equals(other.events["time"].head(100))


def test_tables_have_the_documented_columns_and_sizes(data):
    assert list(data.customers.columns) == ["customer_id", "signup_day", "plan", "monthly_fee", "postcode"]
    assert list(data.events.columns) == ["customer_id", "time", "kind", "amount"]
    assert list(data.snapshots.columns) == ["customer_id", "cutoff", "churned"]
    assert len(data.customers) == churn_data.ChurnConfig().n_customers
    assert set(data.events["kind"].unique()) == {"login", "purchase", "support"}
    assert set(data.customers["plan"].unique()) == {"annual", "monthly"}
    assert 50_000 < len(data.events) < 300_000, "events table should stay small enough for a lab that runs in seconds"
    assert 0.04 < data.snapshots["churned"].mean() < 0.15
    assert (data.events.loc[data.events["kind"] != "purchase", "amount"] == 0).all()
    assert (data.events.loc[data.events["kind"] == "purchase", "amount"] > 0).all()


def test_no_event_falls_on_a_cutoff_and_events_are_sorted(data):
    assert data.events["time"].is_monotonic_increasing
    assert not np.isin(data.events["time"].to_numpy(), np.array(data.config.snapshot_days, dtype=float)).any()


def test_events_start_at_signup_and_stop_when_a_customer_leaves(data):
    signup = data.customers.set_index("customer_id")["signup_day"]
    first_event = data.events.groupby("customer_id")["time"].min()
    assert (first_event >= signup.loc[first_event.index] - 1e-3).all(), "no event before signup (signup_day is rounded)"
    assert data.events["time"].min() >= data.config.log_start_day
    leaving = data.snapshots[data.snapshots["churned"] == 1]
    after_leaving = _events_between(data.events, leaving["customer_id"].to_numpy(),
                                    leaving["cutoff"].to_numpy() + data.config.horizon_days, np.full(len(leaving), np.inf))
    assert after_leaving.sum() == 0, "a customer who churned within the horizon has events after it"


def test_snapshots_are_active_customers_labelled_by_the_horizon(data):
    snapshots, horizon = data.snapshots, data.config.horizon_days
    signup = data.customers.set_index("customer_id")["signup_day"]
    assert (signup.loc[snapshots["customer_id"]].to_numpy() < snapshots["cutoff"].to_numpy()).all()
    assert not snapshots.duplicated(["customer_id", "cutoff"]).any()
    present = set(zip(snapshots["customer_id"], snapshots["cutoff"], strict=True))
    last_day = max(data.config.snapshot_days)
    for cid, cutoff, churned in snapshots.itertuples(index=False):
        later = [cutoff + 30, cutoff + horizon]
        if churned == 0 and cutoff + horizon <= last_day:
            assert all((cid, day) in present for day in later), f"customer {cid} stayed past {cutoff + horizon} but has no rows"
        if churned == 1:
            assert (cid, cutoff + horizon) not in present, f"customer {cid} churned but is still active {horizon} days later"


def test_periods_split_at_the_deploy_day(data):
    config = data.config
    assert data.dev_days and data.future_days
    assert all(day + config.horizon_days <= config.deploy_day for day in data.dev_days)
    assert all(day >= config.deploy_day for day in data.future_days)
    customers, events, snapshots = data.development_view()
    assert (events["time"] < config.deploy_day).all() and (customers["signup_day"] < config.deploy_day).all()
    assert set(snapshots["cutoff"].unique()) == set(data.dev_days)
    known_customers, known_events = data.known_at(500.5)
    assert known_events["time"].max() < 500.5 and len(known_events) == (data.events["time"] < 500.5).sum()
    assert len(known_customers) == (data.customers["signup_day"] < 500.5).sum()


def test_replay_hands_the_pipeline_nothing_from_later_days(small):
    calls = []

    def spy(customers, events, train_snapshots, new_snapshots):
        day = int(new_snapshots["cutoff"].iloc[0])
        calls.append(day)
        assert events["time"].max() < day
        assert customers["signup_day"].max() < day
        assert "churned" not in new_snapshots.columns
        assert set(train_snapshots["cutoff"].unique()) == set(small.dev_days)
        assert (new_snapshots["cutoff"] == day).all()
        return new_snapshots["customer_id"].to_numpy() % 7 / 7.0

    deployment = churn_data.replay_deployment(small, spy)
    assert calls == small.future_days
    future = small.snapshots[small.snapshots["cutoff"].isin(small.future_days)]
    np.testing.assert_array_equal(deployment.churned, future["churned"].to_numpy())
    np.testing.assert_array_equal(deployment.customer_id, future["customer_id"].to_numpy())
    np.testing.assert_allclose(deployment.scores, future["customer_id"].to_numpy() % 7 / 7.0)


def test_replay_rejects_scores_of_the_wrong_shape(small):
    with pytest.raises(ValueError, match="one score per row"):
        churn_data.replay_deployment(small, lambda c, e, train, new: np.zeros(len(new) + 1))


def test_honest_features_carry_signal_and_the_future_window_carries_far_more(data):
    """The lab's premise: past activity predicts churn; counting events after the cutoff nearly gives it away."""
    rows = data.dev_snapshots()
    ids, cutoff = rows["customer_id"].to_numpy(), rows["cutoff"].to_numpy().astype(float)
    logins = data.events[data.events["kind"] == "login"]
    tickets = data.events[data.events["kind"] == "support"]
    past = np.column_stack([np.log1p(_events_between(logins, ids, cutoff - 30, cutoff)),
                            np.log1p(_events_between(logins, ids, cutoff - 90, cutoff - 30)),
                            _events_between(tickets, ids, cutoff - 30, cutoff)])
    model = LogisticRegression().fit(past, rows["churned"])
    honest = roc_auc_score(rows["churned"], model.predict_proba(past)[:, 1])
    leaky = roc_auc_score(rows["churned"], -_events_between(data.events, ids, cutoff, np.full(len(rows), np.inf)))
    assert 0.65 < honest < 0.85, f"past activity should predict churn, but not perfectly: AUC {honest:.3f}"
    assert leaky > 0.9, f"events after the cutoff should nearly give the label away: AUC {leaky:.3f}"


def test_generation_is_fast():
    started = time.perf_counter()
    churn_data.make_churn_data(seed=21)
    assert time.perf_counter() - started < 1.5
