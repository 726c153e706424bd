# Solutions of lab 05, injected by course/run_labs.py in place of each exercise cell.

# %% ex:5.1
def causal_attention(q, k, v):
    scores = q @ k.T / np.sqrt(q.shape[1])
    scores = np.where(np.tril(np.ones(scores.shape, dtype=bool)), scores, -np.inf)
    scores = scores - scores.max(axis=1, keepdims=True)
    weights = np.exp(scores) / np.exp(scores).sum(axis=1, keepdims=True)
    return weights @ v

# %% ex:5.2
def full_softmax_loss(logits, targets):
    top = logits.max(axis=1, keepdims=True)
    log_z = top[:, 0] + np.log(np.exp(logits - top).sum(axis=1))
    return float((log_z - logits[np.arange(len(targets)), targets]).mean())
