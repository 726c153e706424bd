# Solutions of lab 12, injected by course/run_labs.py in place of each exercise cell.

# %% ex:12.1
def my_psi(expected, actual):
    e, a = np.asarray(expected, float), np.asarray(actual, float)
    e = np.maximum(e / e.sum(), 1e-4)
    a = np.maximum(a / a.sum(), 1e-4)
    return float(np.sum((a - e) * np.log(a / e)))

# %% ex:12.2
def interleave(a, b, coins, k):
    lists, picks, out, shown, flips = {"a": a, "b": b}, {"a": 0, "b": 0}, [], set(), iter(coins)
    while len(out) < k:
        left = {t: [x for x in lists[t] if x not in shown] for t in "ab"}
        if not left["a"] and not left["b"]:
            break
        team = next(flips) if picks["a"] == picks["b"] else min(picks, key=picks.get)
        if not left[team]:
            team = "b" if team == "a" else "a"
        out.append((left[team][0], team))
        shown.add(left[team][0])
        picks[team] += 1
    return out
