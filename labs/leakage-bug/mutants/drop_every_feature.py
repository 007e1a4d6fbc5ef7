# catches: future_auc_above_floor
# why: "fixing" the leaks by dropping every feature: nothing can leak any more, validation and production agree at 0.5, and the model is useless
def prepare_matrix(features, labels, train_rows):
    return np.zeros((len(features), 1))
