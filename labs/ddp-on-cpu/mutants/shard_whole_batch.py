# catches: shards_partition_batch
# why: no DistributedSampler: every rank takes the whole batch; the averaged gradient is still the
# why: full-batch one, so nothing fails, but N processes do the work of one
def shard_batch(x, y, rank, world_size):
    return x, y
