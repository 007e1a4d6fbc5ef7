# catches: ring_traffic_per_rank, ring_neighbours_only, ring_all_reduce_sums
# why: the obvious all-reduce: every rank sends its whole buffer to every other rank and adds up what
# why: arrives; the sum is right, but each rank sends (N-1) buffers instead of 2(N-1)/N of one, talks
# why: to every rank instead of one neighbour, and every rank adds in its own order (different bits)
def ring_all_reduce(tensor):
    rank, world_size = dist.get_rank(), dist.get_world_size()
    requests = [dist.isend(tensor, dst=peer) for peer in range(world_size) if peer != rank]
    total = tensor.clone()
    incoming = torch.empty_like(tensor)
    for peer in range(world_size):
        if peer != rank:
            dist.recv(incoming, src=peer)
            total += incoming
    for request in requests:
        request.wait()
    tensor.copy_(total)
    return tensor
