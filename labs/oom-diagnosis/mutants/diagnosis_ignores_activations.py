# catches: diagnosis_names_dominant_component
# why: the "the model is too big" reflex: only weights, gradients and optimizer state are compared, as if activations were free because they are temporary
def diagnose_oom(breakdown):
    persistent = {key: breakdown[key] for key in ("weights", "gradients", "optimizer_state")}
    return max(persistent, key=persistent.get)
