# catches: features_are_point_in_time
# why: a "postcode churn rate" feature computed in build_features from the snapshots' churned column, every row's label included: the labels are outcomes after the cutoff too
def build_features(customers, events, snapshots):
    rows = snapshots[["customer_id", "cutoff"]].reset_index(drop=True)
    features = rows.merge(customers, on="customer_id", how="left")
    features["tenure_days"] = features["cutoff"] - features["signup_day"]
    features["annual"] = (features["plan"] == "annual").astype(float)
    activity = [summarize_activity(events[events["time"] < cutoff], cutoff, rows.loc[at, "customer_id"]).set_axis(at)
                for cutoff, at in rows.groupby("cutoff").groups.items()]
    features = features.join(pd.concat(activity))[FEATURE_COLUMNS]
    if "churned" in snapshots:
        rate = snapshots["churned"].groupby(features["postcode"].to_numpy()).mean()
        features["postcode_churn_rate"] = features["postcode"].map(rate).to_numpy()
    else:
        features["postcode_churn_rate"] = np.nan
    return features


_prepare_matrix_without_rate = prepare_matrix


def prepare_matrix(features, labels, train_rows):
    rate = features["postcode_churn_rate"].to_numpy(dtype=float)
    rate = np.where(np.isnan(rate), np.nanmean(rate) if np.isfinite(rate).any() else 0.0, rate)
    return np.column_stack([_prepare_matrix_without_rate(features, labels, train_rows), rate])
