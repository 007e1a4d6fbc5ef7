# catches: fit_on_train_only
# why: the target encoding is fixed but the scaler is still the one-liner StandardScaler().fit_transform(X) on every row, so the validation rows shape the training rows' scale
def prepare_matrix(features, labels, train_rows):
    labels = np.asarray(labels, dtype=float)
    train_rows = np.asarray(train_rows)
    postcode = features["postcode"].to_numpy()
    postcode_rate = target_encode(postcode[train_rows], labels[train_rows], postcode)
    for fold in np.array_split(np.random.default_rng(0).permutation(train_rows), 5):
        rest = np.setdiff1d(train_rows, fold)
        postcode_rate[fold] = target_encode(postcode[rest], labels[rest], postcode[fold])
    X = np.column_stack([numeric_block(features), postcode_rate])
    return StandardScaler().fit_transform(X)
