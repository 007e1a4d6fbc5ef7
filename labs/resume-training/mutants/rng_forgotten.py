# catches: checkpoint_rng, resume_bit_identical
# why: model, optimizer, scheduler and step are saved, the random generators are not: the resumed run
# why: draws the dropout masks and augmentations of a freshly seeded process, not those of the run
def save_checkpoint(path, model, optimizer, scheduler, step):
    checkpoint = {"step": step, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                  "scheduler": scheduler.state_dict()}
    torch.save(checkpoint, path)


def load_checkpoint(path, model, optimizer, scheduler):
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(checkpoint["model"])
    optimizer.load_state_dict(checkpoint["optimizer"])
    scheduler.load_state_dict(checkpoint["scheduler"])
    return checkpoint["step"]
