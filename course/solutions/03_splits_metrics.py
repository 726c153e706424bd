# Solutions of lab 03, injected by course/run_labs.py in place of each exercise cell.

# %% ex:3.1
def ndcg(ranks, k):
    r = np.asarray(ranks, dtype=float)
    return float(np.where(r < k, 1.0 / np.log2(r + 2.0), 0.0).mean())

# %% ex:3.2
honest = np.bincount(np.concatenate(split.train.sequences), minlength=data.n_items)

# %% ex:3.3
def sampled_hr10(s):
    s = np.asarray(s, dtype=float)
    target = s[:, :1]
    rank = (s[:, 1:] >= target).sum(axis=1)
    return float((rank < 10).mean())
