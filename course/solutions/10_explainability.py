# Solutions of lab 10, injected by course/run_labs.py in place of each exercise cell.

# %% ex:10.1
def occlusion_weights(score, history):
    full = score(history)
    return [full - score(history[:j] + history[j + 1:]) for j in range(len(history))]

# %% ex:10.2
def top_beats_random(fall_top, fall_random):
    t, r = np.asarray(fall_top), np.asarray(fall_random)
    return float(np.mean(np.where(t > r, 1.0, np.where(t == r, 0.5, 0.0))))
