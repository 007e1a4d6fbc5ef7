# catches: fit_on_train_only, no_customer_on_both_sides
# why: "fixing" the split by time (the last development months validate) while the encoder and scaler still learn from every row; a time split alone also keeps long-lived customers on both sides
def split_train_valid(snapshots):
    cutoff = snapshots["cutoff"].to_numpy()
    late = cutoff >= np.quantile(np.unique(cutoff), 0.7)
    return np.flatnonzero(~late), np.flatnonzero(late)


def prepare_matrix(features, labels, train_rows):
    postcode = features["postcode"].to_numpy()
    postcode_rate = target_encode(postcode, labels, postcode)
    X = np.column_stack([numeric_block(features), postcode_rate])
    return StandardScaler().fit_transform(X)
