# catches: ring_all_reduce_sums, ring_traffic_per_rank, ring_neighbours_only
# why: every rank calls the blocking dist.send before dist.recv; gloo's send waits for the matching
# why: receive, so all ranks wait on each other and the ring never starts (a deadlock, not an error)
def ring_all_reduce(tensor):
    rank, world_size = dist.get_rank(), dist.get_world_size()
    right, left = (rank + 1) % world_size, (rank - 1) % world_size
    chunks = tensor.view(-1).tensor_split(world_size)
    scratch = torch.empty_like(chunks[0])
    for step in range(world_size - 1):
        send_index, recv_index = (rank - step) % world_size, (rank - step - 1) % world_size
        incoming = scratch[: chunks[recv_index].numel()]
        dist.send(chunks[send_index], dst=right)  # blocks until the right neighbour receives: it never does
        dist.recv(incoming, src=left)
        chunks[recv_index].add_(incoming)
    for step in range(world_size - 1):
        send_index, recv_index = (rank - step + 1) % world_size, (rank - step) % world_size
        dist.send(chunks[send_index], dst=right)
        dist.recv(chunks[recv_index], src=left)
    return tensor
