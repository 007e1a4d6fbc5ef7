# catches: ring_all_reduce_sums, ring_traffic_per_rank
# why: stopping after reduce-scatter: each rank holds the complete sum of one chunk only, and partial
# why: sums everywhere else; the second phase that passes the finished chunks around is missing
def ring_all_reduce(tensor):
    rank, world_size = dist.get_rank(), dist.get_world_size()
    right, left = (rank + 1) % world_size, (rank - 1) % world_size
    chunks = tensor.view(-1).tensor_split(world_size)
    scratch = torch.empty_like(chunks[0])
    for step in range(world_size - 1):
        send_index, recv_index = (rank - step) % world_size, (rank - step - 1) % world_size
        incoming = scratch[: chunks[recv_index].numel()]
        request = dist.isend(chunks[send_index], dst=right)
        dist.recv(incoming, src=left)
        request.wait()
        chunks[recv_index].add_(incoming)
    return tensor
