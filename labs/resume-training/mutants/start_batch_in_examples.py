# catches: loader_resumes_mid_epoch, resume_bit_identical
# why: start_batch is used as a number of examples to skip instead of a number of batches: the resumed
# why: epoch is shifted by a few examples and has the wrong number of batches
def make_loader(dataset, batch_size, seed, epoch, start_batch=0):
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    order = torch.randperm(len(dataset), generator=generator)
    return DataLoader(dataset, batch_size=batch_size, sampler=order[start_batch:].tolist(), drop_last=True,
                      generator=generator)
