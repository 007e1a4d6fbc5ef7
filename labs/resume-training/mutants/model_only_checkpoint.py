# catches: checkpoint_model_and_optimizer, checkpoint_scheduler, checkpoint_rng, resume_bit_identical
# why: the checkpoint of most tutorials: the weights and the step. The resumed run starts AdamW from
# why: zero moments, warms the learning rate up again and draws other dropout masks and augmentations
def save_checkpoint(path, model, optimizer, scheduler, step):
    torch.save({"step": step, "model": model.state_dict()}, path)


def load_checkpoint(path, model, optimizer, scheduler):
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(checkpoint["model"])
    return checkpoint["step"]
