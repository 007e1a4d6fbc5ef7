# catches: checkpoint_rng, resume_bit_identical
# why: torch's generator is saved, but the augmentation also draws from Python's random (the flip) and
# why: NumPy (the noise scale), which come back freshly seeded after the resume
def capture_rng_state():
    return {"torch": torch.get_rng_state()}


def restore_rng_state(state):
    torch.set_rng_state(state["torch"])
