"""A small, deterministic churn dataset: customers, their timestamped events, and monthly snapshots.

The story: a subscription app scores every active customer once a month ("will this customer
cancel within the next 60 days?") and retention staff call the riskiest ones. Each customer
signs up, uses the app (logins, purchases, support tickets) and, some day, starts to drift away:
activity fades and support tickets pile up for a few weeks, then they cancel. About a quarter
cancel abruptly, with no warning in their events; no feature can see those coming.

Three tables come out, shaped like what a warehouse would hand you:

    customers  one row per customer   customer_id, signup_day, plan, monthly_fee, postcode
    events     one row per event      customer_id, time, kind ("login" | "purchase" | "support"), amount
    snapshots  one row per (customer, month) the customer was active
                                      customer_id, cutoff, churned

`cutoff` is the prediction time of a snapshot row: a feature may use only events with
`time < cutoff`. `churned` is 1 when the customer cancels in (cutoff, cutoff + 60 days]. Times are
days as floats, so no event ever falls exactly on a cutoff (cutoffs are whole days).

The timeline has two periods:

    development  cutoffs 60, 90, ..., 420   labels known by day 480 (cutoff + 60 <= 480)
    future       cutoffs 480, 510, 540, 570 the model is deployed on day 480 and scores these

Trade-off, said plainly: the data is simulated, so the "right" features are knowable in a way
real data never is; it is small (about a thousand customers) so that a lab runs in seconds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

KINDS = ("login", "purchase", "support")


@dataclass(frozen=True)
class ChurnConfig:
    n_customers: int = 1200
    first_signup_day: float = -300.0   # customers who joined before the logs start exist too
    last_signup_day: float = 560.0     # nobody joining later would ever be scored
    log_start_day: float = -90.0       # the event log starts here (a 90-day window at day 0 is complete)
    snapshot_days: tuple[int, ...] = tuple(range(60, 571, 30))
    horizon_days: int = 60             # churned = cancels within this many days after the cutoff
    deploy_day: int = 480              # end of development; the model goes live here
    base_hazard_per_day: float = 0.0016   # chance per day that a customer starts to drift away
    abrupt_share: float = 0.25         # cancellations with no warning in the events
    n_postcodes: int = 300             # about four customers per postcode: nearly an identifier
    postcodes_per_region: int = 15     # the region (not the postcode) carries a real, weak effect
    mean_logins_per_day: float = 0.35

    @property
    def end_day(self) -> float:
        return float(max(self.snapshot_days) + self.horizon_days)


@dataclass(frozen=True)
class ChurnData:
    customers: pd.DataFrame
    events: pd.DataFrame
    snapshots: pd.DataFrame
    config: ChurnConfig = field(default_factory=ChurnConfig)

    @property
    def dev_days(self) -> list[int]:
        """Snapshot days whose labels are known when the model is built (cutoff + horizon <= deploy day)."""
        return [d for d in self.config.snapshot_days if d + self.config.horizon_days <= self.config.deploy_day]

    @property
    def future_days(self) -> list[int]:
        """Snapshot days the deployed model scores: the truly held-out period."""
        return [d for d in self.config.snapshot_days if d >= self.config.deploy_day]

    def dev_snapshots(self) -> pd.DataFrame:
        return self.snapshots[self.snapshots["cutoff"].isin(self.dev_days)].reset_index(drop=True)

    def snapshots_on(self, day: int) -> pd.DataFrame:
        return self.snapshots[self.snapshots["cutoff"] == day].reset_index(drop=True)

    def known_at(self, day: float) -> tuple[pd.DataFrame, pd.DataFrame]:
        """(customers, events) as the warehouse holds them on `day`: nothing from later exists yet."""
        customers = self.customers[self.customers["signup_day"] < day].reset_index(drop=True)
        events = self.events[self.events["time"] < day].reset_index(drop=True)
        return customers, events

    def development_view(self) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
        """(customers, events, labelled snapshots) as they stand on the deploy day: what you build with.

        The events still reach past most snapshots' cutoffs (a row at day 60 sees a table that runs
        to day 480): that is what a backfill looks like, and why features must filter by cutoff.
        """
        customers, events = self.known_at(self.config.deploy_day)
        return customers, events, self.dev_snapshots()


@dataclass(frozen=True)
class Deployment:
    """What happened in the future period: one entry per scored snapshot row."""

    customer_id: np.ndarray  # (n,)
    cutoff: np.ndarray       # (n,)
    churned: np.ndarray      # (n,) 0/1, the truth, learned 60 days after each cutoff
    scores: np.ndarray       # (n,) what the deployed pipeline said on the day


TrainAndScore = Callable[[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame], np.ndarray]


def replay_deployment(data: ChurnData, train_and_score: TrainAndScore) -> Deployment:
    """Replay the future period the way production lives it.

    On each future snapshot day the pipeline is called with the customers and events the warehouse
    holds on that day (nothing later exists yet), the labelled development snapshots to learn
    from, and the day's active customers without labels. Whatever a pipeline peeked at offline,
    here it cannot: this is the score that tells the truth.
    """
    train = data.dev_snapshots()
    parts = []
    for day in data.future_days:
        customers, events = data.known_at(day)
        rows = data.snapshots_on(day)
        scores = np.asarray(train_and_score(customers, events, train, rows.drop(columns="churned")), dtype=float)
        if scores.shape != (len(rows),):
            raise ValueError(f"train_and_score returned scores of shape {scores.shape} for {len(rows)} rows on day {day}; "
                             "expected one score per row of new_snapshots, in order")
        parts.append((rows["customer_id"].to_numpy(), rows["cutoff"].to_numpy(), rows["churned"].to_numpy(), scores))
    customer_id, cutoff, churned, scores = (np.concatenate(column) for column in zip(*parts, strict=True))
    return Deployment(customer_id=customer_id, cutoff=cutoff, churned=churned, scores=scores)


def make_churn_data(seed: int = 0, n_customers: int | None = None, config: ChurnConfig | None = None) -> ChurnData:
    """Simulate the three tables. Same seed and config, same tables (bit for bit)."""
    config = config or ChurnConfig()
    if n_customers is not None:
        config = replace(config, n_customers=n_customers)
    rng = np.random.default_rng(seed)
    N = config.n_customers

    # Who the customers are.
    signup = np.sort(rng.uniform(config.first_signup_day, config.last_signup_day, N))
    annual = rng.random(N) < 0.4
    fee = np.round(np.where(annual, 8.0, 12.0) + rng.gamma(2.0, 2.5, N), 2)
    postcode = rng.integers(0, config.n_postcodes, N)
    region_effect = rng.normal(0.0, 0.5, config.n_postcodes // config.postcodes_per_region + 1)
    logins_per_day = rng.gamma(2.0, config.mean_logins_per_day / 2.0, N)

    # When they start to drift away, and when they cancel. Annual plans stay longer, expensive and
    # rarely-used subscriptions leave sooner, and some regions have a competitor.
    risk = (-0.8 * annual + 0.05 * (fee - 14.0) + region_effect[postcode // config.postcodes_per_region]
            - 0.5 * np.log(logins_per_day / config.mean_logins_per_day))
    onset = signup + rng.exponential(1.0 / (config.base_hazard_per_day * np.exp(risk)))
    abrupt = rng.random(N) < config.abrupt_share
    decline_days = np.where(abrupt, rng.uniform(0.0, 5.0, N), rng.uniform(20.0, 75.0, N))
    churn_day = onset + decline_days

    # Events: Poisson processes whose rate fades from 100% at `onset` to 15% at `churn_day`.
    start = np.maximum(signup, config.log_start_day)
    stop = np.minimum(churn_day, config.end_day)
    frames = []
    for kind, peak, fading in (("login", logins_per_day, True),
                               ("purchase", 0.12 * logins_per_day, True),
                               ("support", np.full(N, 0.06), False)):
        who, time = _thinned_poisson(rng, start, stop, peak)
        if fading:
            keep = rng.random(time.size) < _activity(time, onset[who], churn_day[who])
        else:  # tickets: a trickle always, a flood while drifting away
            keep = rng.random(time.size) < np.where(time >= onset[who], 1.0, 0.15)
        who, time = who[keep], time[keep]
        amount = np.round(rng.lognormal(np.log(fee[who]), 0.5), 2) if kind == "purchase" else np.zeros(time.size)
        frames.append(pd.DataFrame({"customer_id": who, "time": time, "kind": kind, "amount": amount}))
    events = pd.concat(frames, ignore_index=True).sort_values(["time", "customer_id"], kind="stable").reset_index(drop=True)

    customers = pd.DataFrame({
        "customer_id": np.arange(N),
        "signup_day": np.round(signup, 3),
        "plan": np.where(annual, "annual", "monthly"),
        "monthly_fee": fee,
        "postcode": [f"PC{p:04d}" for p in postcode],
    })

    # Snapshots: every active customer on every snapshot day, labelled by what happens next.
    rows = []
    for day in config.snapshot_days:
        active = np.flatnonzero((signup < day) & (churn_day > day))
        churned = (churn_day[active] <= day + config.horizon_days).astype(np.int64)
        rows.append(pd.DataFrame({"customer_id": active, "cutoff": day, "churned": churned}))
    snapshots = pd.concat(rows, ignore_index=True)
    snapshots["cutoff"] = snapshots["cutoff"].astype(np.int64)
    return ChurnData(customers=customers, events=events, snapshots=snapshots, config=config)


def _thinned_poisson(rng: np.random.Generator, start: np.ndarray, stop: np.ndarray,
                     rate: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Event times of a Poisson process with constant `rate` on [start, stop) for each customer."""
    span = np.clip(stop - start, 0.0, None)
    counts = rng.poisson(rate * span)
    who = np.repeat(np.arange(start.size), counts)
    time = start[who] + rng.random(who.size) * span[who]
    return who, time


def _activity(time: np.ndarray, onset: np.ndarray, churn_day: np.ndarray) -> np.ndarray:
    """1 before the onset, then fading linearly to 0.15 at the cancellation."""
    progress = np.clip((time - onset) / np.maximum(churn_day - onset, 1e-9), 0.0, 1.0)
    return 1.0 - 0.85 * progress
