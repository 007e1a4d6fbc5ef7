# catches: loader_resumes_mid_epoch, resume_bit_identical
# why: the epoch's order is right, but start_batch is accepted and never used: a resumed run replays
# why: the epoch from its first batch
def make_loader(dataset, batch_size, seed, epoch, start_batch=0):
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    order = torch.randperm(len(dataset), generator=generator)
    return DataLoader(dataset, batch_size=batch_size, sampler=order.tolist(), drop_last=True, generator=generator)
