# catches: resume_bit_identical, resume_continues
# why: the checkpoint stores the index of the step just done instead of the number of steps done: the
# why: resumed run repeats that step's batch with the updated weights, and runs one step too many
def train(config, checkpoint_path):
    model, optimizer, scheduler = build(config)
    dataset = make_dataset(config)
    batches_per_epoch = len(dataset) // config.batch_size
    step = 0
    if os.path.exists(checkpoint_path):
        step = load_checkpoint(checkpoint_path, model, optimizer, scheduler)
    losses = {}
    while step < config.total_steps:
        epoch, start_batch = divmod(step, batches_per_epoch)
        for batch in make_loader(dataset, config.batch_size, config.seed, epoch, start_batch):
            losses[step] = train_step(model, optimizer, scheduler, batch)
            if (step + 1) % config.checkpoint_every == 0:
                save_checkpoint(checkpoint_path, model, optimizer, scheduler, step)  # should be step + 1
            step += 1
            if step == config.total_steps:
                break
    return {"model": model, "optimizer": optimizer, "scheduler": scheduler, "losses": losses}
