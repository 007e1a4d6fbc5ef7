# catches: checkpoint_model_and_optimizer, resume_bit_identical
# why: the optimizer is rebuilt on restart and looks fine, so its state is left out of the checkpoint:
# why: AdamW's moments restart at zero and its first update after the resume moves every weight by about lr
def save_checkpoint(path, model, optimizer, scheduler, step):
    checkpoint = {"step": step, "model": model.state_dict(), "scheduler": scheduler.state_dict(),
                  "rng": capture_rng_state()}
    torch.save(checkpoint, path)


def load_checkpoint(path, model, optimizer, scheduler):
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(checkpoint["model"])
    scheduler.load_state_dict(checkpoint["scheduler"])
    restore_rng_state(checkpoint["rng"])
    return checkpoint["step"]
