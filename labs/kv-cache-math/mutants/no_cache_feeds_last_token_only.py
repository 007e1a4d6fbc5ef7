# catches: recompute_generation_greedy
# why: "only the new token needs computing" is true only with a cache; without one, feeding the last token alone throws the whole context away
@torch.no_grad()
def generate(model, prompt_ids, n_new, use_cache=True):
    B, P = prompt_ids.shape
    config = model.config
    tokens = prompt_ids
    if use_cache:
        cache = KVCache(config.n_layers, B, config.n_kv_heads, config.head_dim, P + n_new,
                        device=prompt_ids.device)
        logits = model(prompt_ids, cache=cache, start_pos=0)[:, -1]
    else:
        logits = model(tokens)[:, -1]
    step_logits = []
    for step in range(n_new):
        step_logits.append(logits)
        next_id = logits.argmax(dim=-1, keepdim=True)
        tokens = torch.cat([tokens, next_id], dim=1)
        if step == n_new - 1:
            break
        if use_cache:
            logits = model(next_id, cache=cache, start_pos=tokens.shape[1] - 1)[:, -1]
        else:
            logits = model(next_id)[:, -1]  # should be model(tokens): no cache, so no context
    return tokens, torch.stack(step_logits, dim=1)
