# catches: loader_order
# why: the generator is seeded from the run's seed only (DistributedSampler without set_epoch): every
# why: epoch repeats the first epoch's order
def make_loader(dataset, batch_size, seed, epoch, start_batch=0):
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(dataset), generator=generator)
    usable = len(dataset) // batch_size * batch_size
    return DataLoader(dataset, batch_size=batch_size, sampler=order[start_batch * batch_size : usable].tolist(),
                      drop_last=True, generator=generator)
