# Solutions of lab 11, injected by course/run_labs.py in place of each exercise cell.

# %% ex:11.1
def files_holding(root, needles):
    wanted = [n.encode() for n in needles]
    found = []
    for path in sorted(Path(root).rglob("*")):
        if path.is_file():
            data = path.read_bytes()
            if any(n in data for n in wanted):
                found.append(path.relative_to(root).as_posix())
    return found

# %% ex:11.2
def epsilon_for(sigma, q, steps, delta):
    from opacus.accountants import RDPAccountant

    accountant = RDPAccountant()
    accountant.history = [(sigma, q, steps)]
    return accountant.get_epsilon(delta=delta)

# %% ex:11.3
def bytes_per_round(param_shapes, clients):
    per_client = sum(4 * math.prod(shape) + 128 for shape in param_shapes)  # float32 data + .npy header
    return 2 * clients * per_client  # every client downloads and uploads
