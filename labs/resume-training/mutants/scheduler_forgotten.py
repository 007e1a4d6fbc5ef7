# catches: checkpoint_scheduler, resume_bit_identical
# why: model and optimizer are saved, the learning-rate scheduler is not: after the resume its step
# why: count is 0 again, so the warmup runs a second time in the middle of training
def save_checkpoint(path, model, optimizer, scheduler, step):
    checkpoint = {"step": step, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                  "rng": capture_rng_state()}
    torch.save(checkpoint, path)


def load_checkpoint(path, model, optimizer, scheduler):
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(checkpoint["model"])
    optimizer.load_state_dict(checkpoint["optimizer"])
    restore_rng_state(checkpoint["rng"])
    return checkpoint["step"]
