# catches: checkpointed_forward_saves_memory, fixed_step_fits_budget
# why: checkpoint is called, but around nothing (an identity) while the block runs outside it, so every activation inside the blocks is still saved
def checkpointed_forward(model, x):
    h = model.embed(x)
    for block in model.blocks:
        h = checkpoint(lambda t: t, h, use_reentrant=False)
        h = block(h)
    return model.head(h)
