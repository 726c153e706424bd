# Solutions of lab 13, injected by course/run_labs.py in place of each exercise cell.

# %% ex:13.1
def recall(candidates, exact_top, k):
    per_query = [len({c for c in cand if c >= 0} & set(top[:k])) / k for cand, top in zip(candidates, exact_top, strict=True)]
    return float(np.mean(per_query))


# %% ex:13.2
def tables_mib(items, d):
    floats = 4 * items * d + 2 * items * (d + 1)  # 4 tables of I x d, 2 of I x (d + 1)
    return (floats * 4 + items * 8) / 2**20  # 4 bytes a float32, 8 bytes an int64 id
