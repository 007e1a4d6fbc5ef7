# catches: features_are_point_in_time, fit_on_train_only, no_customer_on_both_sides, validation_matches_future
# why: the inherited pipeline handed back with its three leaks, merely renamed into the graded functions
def build_features(customers, events, snapshots):
    return leaky_build_features(customers, events, snapshots)


def prepare_matrix(features, labels, train_rows):
    return leaky_prepare_matrix(features, labels)


def split_train_valid(snapshots):
    return train_test_split(np.arange(len(snapshots)), test_size=0.25, random_state=0)
