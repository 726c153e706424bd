# Solutions of lab 04, injected by course/run_labs.py in place of each exercise cell.

# %% ex:4.1
def predict(outputs):
    return (outputs[:, 0] > 0).long()

# %% ex:4.2
baseline_acc = float((np.asarray(y_test) == 0).mean())
