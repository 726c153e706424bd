# Solutions of lab 01, injected by course/run_labs.py in place of each exercise cell.

# %% ex:1.1
stats = result["dataset_stats"]
density = stats["interactions"] / (stats["users"] * stats["items"])

# %% ex:1.2
masked = scores.astype(float).copy()
masked[history] = -np.inf
fresh = list(np.argsort(-masked, kind="stable")[:10])
