# catches: ring_all_reduce_sums
# why: an index off by one: the chunk arriving from the left is added into the chunk this rank just
# why: sent, (rank - step) % N, instead of the one the left neighbour sent, (rank - step - 1) % N
def ring_all_reduce(tensor):
    rank, world_size = dist.get_rank(), dist.get_world_size()
    right, left = (rank + 1) % world_size, (rank - 1) % world_size
    chunks = tensor.view(-1).tensor_split(world_size)
    scratch = torch.empty_like(chunks[0])
    for step in range(world_size - 1):
        index = (rank - step) % world_size  # used for the send and, wrongly, for the receive
        incoming = scratch[: chunks[index].numel()]
        request = dist.isend(chunks[index], dst=right)
        dist.recv(incoming, src=left)
        request.wait()
        chunks[index].add_(incoming)
    for step in range(world_size - 1):
        send_index, recv_index = (rank - step + 1) % world_size, (rank - step) % world_size
        request = dist.isend(chunks[send_index], dst=right)
        dist.recv(chunks[recv_index], src=left)
        request.wait()
    return tensor
