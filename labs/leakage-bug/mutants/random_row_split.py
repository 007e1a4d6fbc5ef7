# catches: no_customer_on_both_sides, validation_matches_future
# why: train_test_split on rows: most customers have monthly rows on both sides, so validation meets customers the model has already studied
def split_train_valid(snapshots):
    return train_test_split(np.arange(len(snapshots)), test_size=0.25, random_state=0)
