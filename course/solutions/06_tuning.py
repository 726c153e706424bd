# Solutions of lab 06, injected by course/run_labs.py in place of each exercise cell.

# %% ex:6.1
def best_so_far(values):
    out, best = [], float("nan")
    for v in values:
        if not np.isnan(v) and (np.isnan(best) or v > best):
            best = float(v)
        out.append(best)
    return out

# %% ex:6.2
def stop_epoch(valid, patience):
    best, best_epoch, bad = -np.inf, 0, 0
    for epoch, v in enumerate(valid, start=1):
        if v > best:
            best, best_epoch, bad = v, epoch, 0
        else:
            bad += 1
            if bad >= patience:
                return epoch, best_epoch
    return len(valid), best_epoch

# %% ex:6.3
def seed_summary(x):
    mean, sd = float(np.mean(x)), float(np.std(x, ddof=1))
    low, high = stats.t.interval(0.95, len(x) - 1, loc=mean, scale=stats.sem(x))
    return mean, sd, (float(low), float(high))
