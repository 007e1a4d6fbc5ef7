"""Point-in-time correctness as a property: nothing that happens after a row's cutoff may move its features.

Each perturbation picks a day D and rewrites history after it: deletes some or all later events,
shifts the rest, changes their kinds and amounts, adds events (for customers who had already
left, too) and flips every label not yet known on day D. The features of every snapshot row with
a cutoff up to D must come out exactly as before. Ten perturbations, each on all snapshot rows of
a small dataset generated with a seed the notebook does not use.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

SEED = 4101
N_CUSTOMERS = 300
N_PERTURBATIONS = 10
KINDS = np.array(["login", "purchase", "support"])


def perturb_after(events: pd.DataFrame, snapshots: pd.DataFrame, day: float, rng: np.random.Generator,
                  end_day: float, horizon: int, n_customers: int) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """(events, snapshots, description) with everything after `day` rewritten and the past untouched."""
    time = events["time"].to_numpy()
    later = time > day
    done = []
    keep_share = rng.choice([0.0, 0.5, 0.8])
    keep = ~later | (rng.random(len(events)) < keep_share)
    done.append(f"deleted {'all' if keep_share == 0 else f'{1 - keep_share:.0%} of the'} events after day {day:.1f}")
    changed = events[keep].copy()
    later = changed["time"].to_numpy() > day
    if later.any() and rng.random() < 0.7:
        changed.loc[later, "time"] += rng.uniform(0.0, 15.0, later.sum())
        changed.loc[later, "amount"] *= rng.uniform(0.5, 2.0, later.sum())
        changed.loc[later, "kind"] = rng.choice(KINDS, later.sum())
        done.append("shifted, re-kinded and re-priced the later events that were kept")
    n_new = int(rng.integers(50, 400))
    added = pd.DataFrame({
        "customer_id": rng.integers(0, n_customers, n_new),
        "time": rng.uniform(day + 1e-3, end_day, n_new),
        "kind": rng.choice(KINDS, n_new),
        "amount": np.round(rng.lognormal(2.5, 0.5, n_new), 2),
    })
    added.loc[added["kind"] != "purchase", "amount"] = 0.0
    done.append(f"added {n_new} events after that day")
    changed = pd.concat([changed, added], ignore_index=True)
    changed = changed.sort_values(["time", "customer_id"], kind="stable").reset_index(drop=True)
    relabelled = snapshots.copy()
    unknown = (relabelled["cutoff"] + horizon > day).to_numpy()   # labels learned only after `day`
    relabelled.loc[unknown, "churned"] = 1 - relabelled.loc[unknown, "churned"]
    done.append("flipped every label not yet known on that day")
    return changed, relabelled, ", ".join(done)


def test_features_are_point_in_time(submission, churn, remote, helpers):
    read_features = helpers.read_features
    data = churn.make_churn_data(seed=SEED, n_customers=N_CUSTOMERS)
    customers, events, snapshots = data.customers, data.events, data.snapshots
    n_rows = len(snapshots)
    customers_there = remote.frame(customers)
    baseline = read_features(submission.build_features(customers_there, remote.frame(events), remote.frame(snapshots)), n_rows)

    rng = np.random.default_rng(SEED)
    cutoffs = snapshots["cutoff"].to_numpy()
    failures = []
    for day in rng.uniform(min(data.config.snapshot_days) + 10, max(data.config.snapshot_days) - 5, N_PERTURBATIONS):
        changed_events, changed_snapshots, description = perturb_after(
            events, snapshots, float(day), rng, data.config.end_day, data.config.horizon_days, N_CUSTOMERS)
        after = read_features(submission.build_features(customers_there, remote.frame(changed_events),
                                                         remote.frame(changed_snapshots)), n_rows)
        rows = np.flatnonzero(cutoffs <= day)
        moved, details = baseline.row_differences(after, rows)
        if moved.any():
            first = rows[np.flatnonzero(moved)[0]]
            failures.append((day, description, int(moved.sum()), len(rows), int(snapshots["customer_id"].iloc[first]),
                             int(cutoffs[first]), details))

    if failures:
        day, description, n_moved, n_rows_compared, customer, cutoff, details = failures[0]
        raise AssertionError(
            f"expected: changing only what happens after day D leaves every row with cutoff <= D unchanged. "
            f"Got: in {len(failures)} of {N_PERTURBATIONS} random perturbations some of these rows moved. "
            f"For example, after we {description}, {n_moved} of {n_rows_compared} rows with cutoff <= {day:.1f} changed; "
            f"customer {customer} at cutoff {cutoff}: {'; '.join(details[:4]) or 'the row changed'}. "
            "Likely cause: features computed from events after the cutoff, e.g. a window with a lower bound but no "
            "upper bound (events[time >= cutoff - 30] also keeps everything after the cutoff), a 'last seen' taken over "
            "the whole events table, or anything computed from labels. Keep only events with time < cutoff before "
            "aggregating, separately for every cutoff.")
