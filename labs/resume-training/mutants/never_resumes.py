# catches: resume_continues
# why: checkpoints are written but never read back (a --resume flag nobody passed): the run starts over
# why: from step 0 after every crash; being deterministic, it still ends bit-identical, days later
def train(config, checkpoint_path):
    model, optimizer, scheduler = build(config)
    dataset = make_dataset(config)
    batches_per_epoch = len(dataset) // config.batch_size
    step = 0
    losses = {}
    while step < config.total_steps:
        epoch, start_batch = divmod(step, batches_per_epoch)
        for batch in make_loader(dataset, config.batch_size, config.seed, epoch, start_batch):
            losses[step] = train_step(model, optimizer, scheduler, batch)
            step += 1
            if step % config.checkpoint_every == 0:
                save_checkpoint(checkpoint_path, model, optimizer, scheduler, step)
            if step == config.total_steps:
                break
    return {"model": model, "optimizer": optimizer, "scheduler": scheduler, "losses": losses}
