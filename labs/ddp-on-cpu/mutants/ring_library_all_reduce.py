# catches: ring_traffic_per_rank, ring_neighbours_only
# why: "a ring is what all_reduce does anyway": the library's collective gives the right sum, but no
# why: point-to-point message is sent, so nothing of the ring was written
def ring_all_reduce(tensor):
    dist.all_reduce(tensor)
    return tensor
