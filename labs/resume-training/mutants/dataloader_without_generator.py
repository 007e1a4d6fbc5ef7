# catches: loader_resumes_mid_epoch, resume_bit_identical
# why: the order is seeded by (seed, epoch), but the DataLoader gets no generator=: every time it is
# why: iterated it draws a base seed from torch's global generator, so a resume mid-epoch shifts the noise
def make_loader(dataset, batch_size, seed, epoch, start_batch=0):
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    order = torch.randperm(len(dataset), generator=generator)
    usable = len(dataset) // batch_size * batch_size
    return DataLoader(dataset, batch_size=batch_size, sampler=order[start_batch * batch_size : usable].tolist(),
                      drop_last=True)
