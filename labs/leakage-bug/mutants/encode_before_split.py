# catches: fit_on_train_only
# why: prepare_matrix is right, but validate calls it on every row before splitting ("preprocess, then split"), so validation labels shape the encoding the model trains on
def validate(customers, events, snapshots):
    features = build_features(customers, events, snapshots)
    labels = snapshots["churned"].to_numpy(dtype=float)
    X = prepare_matrix(features, labels, np.arange(len(features)))
    train_rows, valid_rows = split_train_valid(snapshots)
    model = make_model().fit(X[train_rows], labels[train_rows])
    return {"train_rows": train_rows, "valid_rows": valid_rows,
            "valid_scores": model.predict_proba(X[valid_rows])[:, 1]}
