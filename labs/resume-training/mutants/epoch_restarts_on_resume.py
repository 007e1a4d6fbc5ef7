# catches: resume_bit_identical
# why: the resumed run finds the right epoch but starts it from its first batch: the batches before the
# why: checkpoint are seen twice in that epoch, and those after the crash point never
def train(config, checkpoint_path):
    model, optimizer, scheduler = build(config)
    dataset = make_dataset(config)
    batches_per_epoch = len(dataset) // config.batch_size
    step = 0
    if os.path.exists(checkpoint_path):
        step = load_checkpoint(checkpoint_path, model, optimizer, scheduler)
    losses = {}
    while step < config.total_steps:
        epoch = step // batches_per_epoch  # the batch within the epoch is forgotten
        for batch in make_loader(dataset, config.batch_size, config.seed, epoch):
            losses[step] = train_step(model, optimizer, scheduler, batch)
            step += 1
            if step % config.checkpoint_every == 0:
                save_checkpoint(checkpoint_path, model, optimizer, scheduler, step)
            if step == config.total_steps:
                break
    return {"model": model, "optimizer": optimizer, "scheduler": scheduler, "losses": losses}
