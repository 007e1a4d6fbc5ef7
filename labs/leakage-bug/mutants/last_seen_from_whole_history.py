# catches: features_are_point_in_time
# why: "days since the last event" taken from events.groupby("customer_id")["time"].max() over the whole table: for a customer still active, the last event lies after the cutoff
def build_features(customers, events, snapshots):
    rows = snapshots[["customer_id", "cutoff"]].reset_index(drop=True)
    features = rows.merge(customers, on="customer_id", how="left")
    features["tenure_days"] = features["cutoff"] - features["signup_day"]
    features["annual"] = (features["plan"] == "annual").astype(float)
    activity = [summarize_activity(events[events["time"] < cutoff], cutoff, rows.loc[at, "customer_id"]).set_axis(at)
                for cutoff, at in rows.groupby("cutoff").groups.items()]
    features = features.join(pd.concat(activity))
    last_seen = events.groupby("customer_id")["time"].max()
    since = features["cutoff"] - features["customer_id"].map(last_seen)
    features["days_since_last_event"] = since.clip(lower=0).fillna(90.0)
    return features[FEATURE_COLUMNS]
