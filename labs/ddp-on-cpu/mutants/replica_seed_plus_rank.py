# catches: replicas_identical, data_parallel_matches_single_process
# why: seeding with seed + rank (meant to vary dropout or augmentation per rank) before building the
# why: model gives every rank different weights; averaged gradients never bring the replicas together
def make_replica(seed):
    torch.manual_seed(seed + dist.get_rank())
    return ddplab.make_model()
