"""Checks of make_loader: a shuffled order fixed by (seed, epoch) alone, and resumable at any batch.

The dataset is built here as example ids: example i is (x = [float(i)], y = i), so every batch
says which examples it holds. It lives on the CPU, where a real dataset lives (train_step moves
each batch to the model's device), so these checks are the same on every device.
"""

import torch

BATCH_SIZE = 8

SEEDED_BY_GLOBAL_RNG = (
    "the order comes from torch's global random generator: DataLoader(shuffle=True) and torch.randperm(n) "
    "without generator= draw from it, and so does everything else (initial weights, noise, dropout on the "
    "CPU), so the order then depends on what ran before. Draw the permutation from your own "
    "torch.Generator().manual_seed(...) built from seed and epoch."
)


def _dataset(submission, n: int):
    ids = torch.arange(n)  # (n,)
    return submission.module("torch.utils.data").TensorDataset(ids.float()[:, None], ids)


def _epoch(submission, dataset, n: int, seed: int, epoch: int, start_batch: int | None = None) -> list[list[int]]:
    """The batches make_loader yields, as lists of example ids, after checking what a batch is."""
    extra = {} if start_batch is None else {"start_batch": start_batch}
    call = f"make_loader(dataset of {n}, batch_size={BATCH_SIZE}, seed={seed}, epoch={epoch}" + (
        f", start_batch={start_batch})" if extra else ")")
    # iter() first: list() of a handle would ask for len(), which an islice or a generator does not have.
    batches = list(iter(submission.make_loader(dataset, BATCH_SIZE, seed, epoch, **extra)))
    ids = []
    for index, batch in enumerate(batches):
        pair = isinstance(batch, (list, tuple)) and len(batch) == 2
        if not pair or not all(isinstance(t, torch.Tensor) for t in batch):
            raise AssertionError(f"{call}: batch {index} should be (x, y) as a DataLoader over a TensorDataset yields "
                                 f"it, got {type(batch).__name__} {str(batch)[:80]}")
        x, y = batch
        if tuple(y.shape) != (BATCH_SIZE,) or tuple(x.shape) != (BATCH_SIZE, 1):
            raise AssertionError(f"{call}: batch {index} should hold {BATCH_SIZE} examples (x {(BATCH_SIZE, 1)}, "
                                 f"y {(BATCH_SIZE,)}), got x {tuple(x.shape)}, y {tuple(y.shape)}. Every batch is "
                                 "full: the last, incomplete one is dropped (drop_last=True), so that every epoch "
                                 "has len(dataset) // batch_size batches and a step number says where a run is.")
        if not torch.equal(x[:, 0].cpu(), y.cpu().to(x.dtype)):
            raise AssertionError(f"{call}: batch {index} pairs x and y of different examples; index the dataset with "
                                 "one list of indices and let the DataLoader collate the pairs.")
        ids.append(y.tolist())
    return ids


def _flat(batches: list[list[int]]) -> list[int]:
    return [i for batch in batches for i in batch]


def test_loader_order(submission):
    for n in (48, 50):
        dataset = _dataset(submission, n)
        per_epoch = n // BATCH_SIZE
        orders = {}
        for epoch in (0, 1, 2):
            batches = _epoch(submission, dataset, n, seed=0, epoch=epoch)
            what = f"make_loader(dataset of {n}, batch_size={BATCH_SIZE}, seed=0, epoch={epoch})"
            assert len(batches) == per_epoch, (
                f"{what}: expected {per_epoch} batches ({n} // {BATCH_SIZE}), got {len(batches)}. "
                + ("Likely cause: the last, incomplete batch is kept; pass drop_last=True." if len(batches) > per_epoch
                   else "Likely cause: examples are skipped or the loader starts part-way through the epoch.")
            )
            order = _flat(batches)
            repeats = len(order) - len(set(order))
            assert repeats == 0, (
                f"{what}: expected every example at most once per epoch, got {repeats} repeated. Likely cause: "
                "indices drawn with replacement (torch.randint, RandomSampler(replacement=True)) instead of one "
                "permutation of the dataset (torch.randperm)."
            )
            assert order != sorted(order), (
                f"{what}: expected a shuffled order, got the examples in dataset order. Shuffle with a permutation "
                "per epoch."
            )
            orders[epoch] = order
        assert orders[0] != orders[1] and orders[1] != orders[2] and orders[0] != orders[2], (
            f"make_loader(dataset of {n}, seed=0): epochs 0, 1 and 2 should each be a different shuffle, got the same "
            "order twice. Likely cause: the generator is seeded from seed alone; seed it from seed and epoch (the "
            "job of DistributedSampler.set_epoch), or every epoch repeats the first one."
        )

    dataset = _dataset(submission, 48)
    first = _epoch(submission, dataset, 48, seed=0, epoch=1)
    submission.module("resumelab").seed_everything(987)  # another process, another history of random draws
    submission.module("torch").rand(5)
    again = _epoch(submission, dataset, 48, seed=0, epoch=1)
    assert again == first, (
        "make_loader(seed=0, epoch=1) gave another order after the global random generators were reseeded: "
        f"first batch {first[0]}, then {again[0]}. A resumed run could never find its place in the epoch. "
        f"Likely cause: {SEEDED_BY_GLOBAL_RNG}"
    )
    other_seed = _epoch(submission, dataset, 48, seed=1, epoch=1)
    assert other_seed != first, (
        "make_loader(seed=1, epoch=1) gave the same order as seed=0: the order should depend on the run's seed "
        "too, so that two runs with different seeds see the data differently."
    )


def test_loader_resumes_mid_epoch(submission):
    n, seed, epoch = 50, 3, 2  # 6 full batches of 8, 2 examples dropped
    dataset = _dataset(submission, n)
    full = _epoch(submission, dataset, n, seed=seed, epoch=epoch)
    for start in (0, 1, 4, 5, 6):
        rest = _epoch(submission, dataset, n, seed=seed, epoch=epoch, start_batch=start)
        assert rest == full[start:], (
            f"make_loader(dataset of {n}, batch_size={BATCH_SIZE}, seed={seed}, epoch={epoch}, start_batch={start}): "
            f"expected batches {start}..{len(full) - 1} of that epoch ({len(full) - start} batches, the first "
            f"{full[start][:4] if start < len(full) else 'none'}...), got {len(rest)} batches"
            + (f", the first {rest[0][:4]}..." if rest else "")
            + ". A run that resumes at step s must see exactly the batches the uninterrupted run saw from s on. "
            "Likely cause: start_batch is ignored, counted in examples instead of batches (skip start_batch * "
            "batch_size examples of the permutation), or the epoch is reshuffled instead of continued."
        )

    torch_module = submission.module("torch")
    torch_module.manual_seed(5)
    before = torch_module.get_rng_state()
    list(iter(submission.make_loader(dataset, BATCH_SIZE, seed, epoch, start_batch=2)))
    after = torch_module.get_rng_state()
    assert torch.equal(before, after), (
        "building and iterating make_loader(..., start_batch=2) changed the state of torch's global random "
        "generator, the one the run's noise (and dropout, on the CPU) draws from. Likely causes: a DataLoader "
        "without generator=: every time it is iterated it draws a base seed from the global generator (even with "
        "your own sampler and no workers); the uninterrupted run draws it at the start of the epoch, the resumed "
        "run in the middle, so every later random draw shifts. Pass generator=torch.Generator().manual_seed(...) "
        "to the DataLoader as well. Or the permutation is drawn from the global generator (torch.randperm or "
        "shuffle=True without generator=), or torch.manual_seed(...) is called to fix the order, which also "
        "resets every later draw of the run. Use a torch.Generator of your own for everything in make_loader."
    )
