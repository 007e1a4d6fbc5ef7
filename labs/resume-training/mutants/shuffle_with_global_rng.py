# catches: loader_order, loader_resumes_mid_epoch, resume_bit_identical
# why: DataLoader(shuffle=True) and skipping batches with islice: the order is drawn from torch's
# why: global generator when the loader is iterated, so a resumed run gets another permutation
import itertools


def make_loader(dataset, batch_size, seed, epoch, start_batch=0):
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, drop_last=True)
    return itertools.islice(loader, start_batch, None)
