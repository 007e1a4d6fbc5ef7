"""Checks of the memory arithmetic: the breakdown against measurement, the diagnosis, Adam's bytes per parameter.

The expected numbers are measured here, in the trusted process: one real step of the lab's model
with the real optimizer, reading bytes off the gradients and the optimizer state that exist
afterwards, and off the tensors autograd hands to a saved-tensors hook. The student's numbers
may be computed from shapes or measured; within 10% of the measurement both pass.
"""

import random

COMPONENTS = ("weights", "gradients", "optimizer_state", "activations")

# (model changes, batch size, optimizer): the failing configuration, then two where other terms weigh more.
# The input batch is under 4% of the activations in each, so counting it or not is within tolerance.
BREAKDOWN_CASES = (
    ({}, 2048, "adam"),
    ({"width": 128, "depth": 2}, 64, "sgd_momentum"),
    ({"width": 96, "depth": 2}, 300, "sgd"),
)

BREAKDOWN_HINTS = {
    "weights": "count every parameter once: p.numel() * p.element_size() (4 bytes in float32).",
    "gradients": "one gradient per trainable parameter, with the parameter's shape and dtype.",
    "optimizer_state": "Adam keeps two fp32 tensors per parameter (exp_avg and exp_avg_sq); SGD with momentum "
                       "one (momentum_buffer); plain SGD none.",
    "activations": "count the tensors autograd saves for backward in forward + loss (each Linear's input, gelu's "
                   "input, the log-probabilities), each storage once and without the parameters; "
                   "torch.autograd.graph.saved_tensors_hooks shows them to you.",
}


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value and abs(value) != float("inf")


def _expect_breakdown(got, what: str) -> dict:
    if not isinstance(got, dict):
        raise AssertionError(f"{what}: expected a dict with keys {list(COMPONENTS)}, got a {type(got).__name__}.")
    missing = [key for key in COMPONENTS if key not in got]
    if missing:
        raise AssertionError(f"{what}: the dict has no key(s) {missing}; expected exactly {list(COMPONENTS)} "
                             f"(got keys {list(got)}).")
    for key in COMPONENTS:
        if not _number(got[key]) or got[key] < 0:
            raise AssertionError(f"{what}: {key!r} must be a number of bytes (int or float, >= 0), got {got[key]!r}.")
    return got


def test_breakdown_matches_measurement(submission, device, oom):
    """memory_breakdown is within 10% of measurement for every component, in three configurations."""
    for changes, batch_size, optimizer in BREAKDOWN_CASES:
        where = oom.describe(changes, batch_size, optimizer)
        expected = oom.measured_breakdown(changes, batch_size, optimizer, device)
        model = oom.remote_model(submission, device, changes)
        x, y = oom.lab.make_batch(batch_size=batch_size, seed=7, device=device)
        got = _expect_breakdown(submission.memory_breakdown(model, x, y, optimizer), f"memory_breakdown for {where}")
        for key in COMPONENTS:
            wanted, value = expected[key], got[key]
            slack = 0.10 * wanted if wanted else 0.01 * expected["weights"]
            if abs(value - wanted) <= slack:
                continue
            hint = BREAKDOWN_HINTS[key]
            if key == "optimizer_state" and optimizer == "adam" and wanted and abs(value / wanted - 0.5) < 0.05:
                hint = ("you counted Adam's state as one copy of the parameters; Adam keeps two "
                        "(exp_avg for the mean of the gradients, exp_avg_sq for their square).")
            ratio = f"{value / wanted:.2f}x the measurement" if wanted else "the measurement is 0"
            raise AssertionError(
                f"memory_breakdown[{key!r}] for {where}: expected about {oom.fmt(wanted)} ({wanted} bytes, "
                f"measured; 10% tolerance), got {oom.fmt(value)} ({ratio}). Likely cause: {hint}")


def test_diagnosis_names_dominant_component(submission, device, oom):
    """diagnose_oom names the largest component: activations at the failing batch, not always the same answer."""
    cases = (
        (oom.measured_breakdown({}, 2048, "adam", device), "activations",
         "the failing configuration (batch 2048, Adam)"),
        (oom.measured_breakdown({"width": 256, "depth": 2}, 16, "adam", device), "optimizer_state",
         "a 4x wider model at batch 16 with Adam"),
        ({"weights": 140_000_000_000, "gradients": 0, "optimizer_state": 0, "activations": 3_000_000_000}, "weights",
         "serving a 70B model in bf16 (no gradients, no optimizer)"),
    )
    shuffle = random.Random(0)
    for breakdown, expected, what in cases:
        items = list(breakdown.items())
        shuffle.shuffle(items)  # the answer must not depend on the order of the keys
        got = submission.diagnose_oom(dict(items))
        table = ", ".join(f"{key} {oom.fmt(value)}" for key, value in breakdown.items())
        if got != expected:
            raise AssertionError(
                f"diagnose_oom for {what} ({table}): expected {expected!r}, the largest component, got {got!r}. "
                "Likely cause: compare all four components and return the key with the largest value. Activations "
                "are temporary but they are all alive at the end of the forward, which is where the peak (and the "
                "OOM) is; and the answer depends on the configuration, it is not always the model.")


def test_adam_bytes_per_param(submission):
    """Adam bytes per parameter by component, in fp32 and with bf16 weights plus an fp32 master copy."""
    expected_by_mode = {
        False: {"weights": (4,), "gradients": (4,), "master_weights": (0,), "optimizer_state": (8,)},
        True: {"weights": (2,), "gradients": (2, 4), "master_weights": (4,), "optimizer_state": (8,)},
    }
    hints = {
        "weights": "a weight takes 4 bytes in fp32 and 2 in bf16.",
        "gradients": "a gradient has its weight's dtype (bf16 in mixed precision; 4 is accepted for setups "
                     "that keep fp32 gradients for the master).",
        "master_weights": "in fp32 the weights are the master copy (0 extra); mixed precision keeps an fp32 "
                          "master copy (4 bytes) because bf16 cannot hold small updates to large weights.",
        "optimizer_state": "Adam keeps two fp32 moments per parameter, exp_avg and exp_avg_sq: 2 x 4 bytes, "
                           "in mixed precision too.",
    }
    for mixed, expected in expected_by_mode.items():
        mode = "mixed precision with fp32 master weights" if mixed else "fp32"
        got = submission.adam_bytes_per_param(mixed)
        if not isinstance(got, dict) or any(key not in got for key in expected):
            raise AssertionError(f"adam_bytes_per_param({mixed}) ({mode}): expected a dict with keys "
                                 f"{list(expected)}, got {got!r}.")
        for key, allowed in expected.items():
            value = got[key]
            if not _number(value) or value not in allowed:
                wanted = " or ".join(str(a) for a in allowed)
                raise AssertionError(f"adam_bytes_per_param({mixed}) ({mode}): {key!r} expected {wanted} bytes, "
                                     f"got {value!r}. Likely cause: {hints[key]}")
