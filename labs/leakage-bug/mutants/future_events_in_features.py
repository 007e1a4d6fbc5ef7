# catches: features_are_point_in_time, validation_matches_future
# why: the backfill hands the whole events table to a helper that trusts its input, so every row counts the events after its cutoff (the inherited pipeline's feature leak)
def build_features(customers, events, snapshots):
    rows = snapshots[["customer_id", "cutoff"]].reset_index(drop=True)
    features = rows.merge(customers, on="customer_id", how="left")
    features["tenure_days"] = features["cutoff"] - features["signup_day"]
    features["annual"] = (features["plan"] == "annual").astype(float)
    activity = [summarize_activity(events, cutoff, rows.loc[at, "customer_id"]).set_axis(at)
                for cutoff, at in rows.groupby("cutoff").groups.items()]
    return features.join(pd.concat(activity))[FEATURE_COLUMNS]
