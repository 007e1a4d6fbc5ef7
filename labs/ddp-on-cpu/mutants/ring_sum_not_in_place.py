# catches: ring_all_reduce_sums
# why: chunk = chunk + incoming builds a new tensor that is no longer a view of the input: the value
# why: returned is the sum, but the tensor the caller passed in (and will use) keeps stale values
def ring_all_reduce(tensor):
    rank, world_size = dist.get_rank(), dist.get_world_size()
    right, left = (rank + 1) % world_size, (rank - 1) % world_size
    chunks = list(tensor.view(-1).tensor_split(world_size))  # a list, so that chunks[i] = ... works
    scratch = torch.empty_like(chunks[0])
    for step in range(world_size - 1):
        send_index, recv_index = (rank - step) % world_size, (rank - step - 1) % world_size
        incoming = scratch[: chunks[recv_index].numel()]
        request = dist.isend(chunks[send_index], dst=right)
        dist.recv(incoming, src=left)
        request.wait()
        chunks[recv_index] = chunks[recv_index] + incoming  # a new tensor, not written into `tensor`
    for step in range(world_size - 1):
        send_index, recv_index = (rank - step + 1) % world_size, (rank - step) % world_size
        request = dist.isend(chunks[send_index], dst=right)
        dist.recv(chunks[recv_index], src=left)
        request.wait()
    return torch.cat(chunks).view_as(tensor)
