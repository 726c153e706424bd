# Solutions of lab 08, injected by course/run_labs.py in place of each exercise cell.

# %% ex:8.1
def top10_agreement(a, b):
    top_a = np.argsort(-a, axis=1)[:, :10]
    top_b = np.argsort(-b, axis=1)[:, :10]
    return float(np.mean([len(set(x) & set(y)) / 10 for x, y in zip(top_a, top_b, strict=True)]))

# %% ex:8.2
p95_ms = float(np.percentile(latencies_s, 95) * 1000)
