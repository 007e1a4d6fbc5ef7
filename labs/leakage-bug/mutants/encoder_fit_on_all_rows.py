# catches: fit_on_train_only
# why: the postcode churn rates and the scaler are learned from every row passed in, the validation rows and their labels included (the inherited pipeline's preprocessing)
def prepare_matrix(features, labels, train_rows):
    postcode = features["postcode"].to_numpy()
    postcode_rate = target_encode(postcode, labels, postcode)
    X = np.column_stack([numeric_block(features), postcode_rate])
    return StandardScaler().fit_transform(X)
