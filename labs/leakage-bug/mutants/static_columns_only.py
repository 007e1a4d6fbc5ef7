# catches: future_auc_above_floor
# why: dropping every event feature because "events are where the leak was": plan, fee, tenure and postcode cannot leak, and cannot see a customer drifting away either
def prepare_matrix(features, labels, train_rows):
    labels = np.asarray(labels, dtype=float)
    train_rows = np.asarray(train_rows)
    postcode = features["postcode"].to_numpy()
    postcode_rate = target_encode(postcode[train_rows], labels[train_rows], postcode)
    for fold in np.array_split(np.random.default_rng(0).permutation(train_rows), 5):
        rest = np.setdiff1d(train_rows, fold)
        postcode_rate[fold] = target_encode(postcode[rest], labels[rest], postcode[fold])
    static = features[["tenure_days", "annual", "monthly_fee"]].astype(float).to_numpy()
    X = np.column_stack([np.log1p(static[:, :1].clip(0)), static[:, 1:], postcode_rate])
    scaler = StandardScaler().fit(X[train_rows])
    return scaler.transform(X)
