# catches: loader_resumes_mid_epoch, resume_bit_identical
# why: torch.manual_seed(seed + epoch) before the shuffle makes the order reproducible, and also resets
# why: the global generator that the noise and dropout draw from: a resume mid-epoch replays the draws of the epoch's start
def make_loader(dataset, batch_size, seed, epoch, start_batch=0):
    torch.manual_seed(seed * 1_000_003 + epoch)
    order = torch.randperm(len(dataset))
    usable = len(dataset) // batch_size * batch_size
    return DataLoader(dataset, batch_size=batch_size, sampler=order[start_batch * batch_size : usable].tolist(),
                      drop_last=True)
