"""DDP (issue 13 §3): 2 processes train the same weights as 1, and no rank stops alone.

The same file is the torchrun worker (`python -m torch.distributed.run ... test_ddp.py OUT
SCENARIO`): each rank fits a small SASRec on synthetic data and writes its weights and loop
state. Equivalence needs what makes two processes do the same arithmetic as one: no dropout
and no hidden history items (ranks draw different masks), full cross-entropy (sampled softmax
draws negatives per rank), and rows with equal numbers of labelled positions (each rank's loss
is a mean over its own positions; see soutui.training.distributed).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

ROOT = Path(__file__).resolve().parents[2]
N_ITEMS, N_USERS, LENGTH = 40, 96, 13
EXACT = {"d_model": 16, "n_heads": 2, "n_layers": 1, "max_len": 10, "dropout": 0.0, "emb_dropout": 0.0,
         "id_dropout": 0.0, "item_mask": 0.0, "time_dropout": 0.0, "use_time": False, "cooc_neighbors": 0,
         "batch_size": 16, "lr": 0.01, "epochs": 1, "patience": 50, "progress": False, "seed": 0,
         "threads": 1, "device": "cpu", "cold_item_reset": False, "valid_users": 0}  # fmt: skip
# Stated tolerances after K = 6 steps (1 epoch x 6 global batches of 16 rows). The two runs sum
# the same gradients in a different order (one 16-row sum vs two 8-row sums averaged), so they
# differ by float32 rounding. Adam divides each step by the gradient's own scale, so where the
# true gradient is zero, rounding noise becomes full-sized steps: the attention KEY projection
# has such directions (softmax is unchanged by a shift common to every key), and they change no
# score. So: every other weight within TOLERANCE, the key projection within KEY_TOLERANCE, and
# the scores themselves within SCORE_TOLERANCE. Measured on this machine: 6.9e-7, 8.1e-4, 8.4e-6
# (after 18 steps the rounding had spread to 1.4e-5 in other weights, which is why K is 6).
TOLERANCE = 1e-5
KEY_TOLERANCE = 1e-2
SCORE_TOLERANCE = 1e-4


def split():  # type: ignore[no-untyped-def]
    """Every user walks a stride through the catalogue; all sequences have the same length, so every
    training row carries the same number of labelled positions."""
    from soutui.data.sequences import SequenceData, leave_one_out

    rng = np.random.default_rng(0)
    seqs = [(int(rng.integers(N_ITEMS)) + int(rng.integers(1, 4)) * np.arange(LENGTH)) % N_ITEMS
            for _ in range(N_USERS)]  # fmt: skip
    ids = np.array([f"i{i}" for i in range(N_ITEMS)], dtype=object)
    return leave_one_out(SequenceData(ids, np.array([f"u{u}" for u in range(N_USERS)], dtype=object), seqs))


def fit(params: dict[str, object], with_valid: bool = True):  # type: ignore[no-untyped-def]
    from soutui.models.sasrec_recommender import SASRecRecommender
    from soutui.training.trainer import LoopTrainer

    torch.set_num_threads(1)
    s = split()
    model = SASRecRecommender(**params).use_trainer(LoopTrainer(progress=False))
    return model.fit(s.train, s.valid if with_valid else None)


def weights(model) -> dict[str, np.ndarray]:  # type: ignore[no-untyped-def]
    return {k: v.detach().cpu().numpy().copy() for k, v in model.net_.state_dict().items()}


def worker(out: Path, scenario: str) -> None:
    """One torchrun rank: `exact` (the equivalence fit), `time` and `cpu` (only rank 1 has a budget,
    wall time or CPU time, so only it would stop: the group must stop with it), or `all` of them
    (one launch for the whole file: starting torchrun costs seconds)."""
    from soutui.training import distributed

    group = distributed.init_from_env()
    runs = {
        "exact": dict(EXACT),
        "time": {**EXACT, "epochs": 400, "lr_schedule": "cosine"} | ({"max_minutes": 0.5 / 60} if group.rank == 1 else {}),
        "cpu": {**EXACT, "epochs": 400} | ({"max_cpu_minutes": 1e-6} if group.rank == 1 else {}),
    }  # fmt: skip
    runs = {k: v for k, v in runs.items() if scenario in (k, "all")}
    for name, params in runs.items():
        model = fit(params, with_valid=name == "exact")
        np.savez(out / f"{name}{group.rank}.npz", **weights(model))
        report = model.training_report() or {}
        state = {k: report[k] for k in ("epoch", "stopped", "best_epoch")}
        (out / f"{name}{group.rank}.json").write_text(json.dumps(state))
    distributed.shutdown()


def torchrun(tmp_path: Path, scenario: str, nproc: int = 2) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
           __file__, str(tmp_path), scenario]  # fmt: skip
    # a hang guard, not a speed check: torchrun on a loaded 2-core box took close to 120 s
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ddp")
    torchrun(out, "all")
    return out


def max_diff(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> float:
    assert a.keys() == b.keys()
    return max(float(np.abs(a[k].astype(np.float64) - b[k]).max()) for k in a if a[k].size)


def split_keys(w: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(every weight with the attention key projection zeroed, the key projection alone)."""
    d = int(EXACT["d_model"])  # type: ignore[call-overload]
    rest, keys = dict(w), {}
    for name in [k for k in w if k.endswith("attn.qkv.weight") or k.endswith("attn.qkv.bias")]:
        keys[name] = w[name][d : 2 * d].copy()
        rest[name] = w[name].copy()
        rest[name][d : 2 * d] = 0.0
    return rest, keys


def test_two_processes_train_the_same_weights_as_one(runs: Path) -> None:
    one = fit(EXACT)
    states = [json.loads((runs / f"exact{r}.json").read_text()) for r in range(2)]
    ranks = [dict(np.load(runs / f"exact{r}.npz")) for r in range(2)]
    assert max_diff(ranks[0], ranks[1]) == 0.0  # DDP keeps the replicas identical
    (rest1, keys1), (rest2, keys2) = split_keys(weights(one)), split_keys(ranks[0])
    diff, key_diff = max_diff(rest1, rest2), max_diff(keys1, keys2)
    assert diff < TOLERANCE, f"2-process weights differ from 1-process by {diff:.2e}"
    assert key_diff < KEY_TOLERANCE, f"key projections differ by {key_diff:.2e}"
    moved = max_diff(weights(one), weights(fit({**EXACT, "epochs": 0})))
    assert moved > 1000 * TOLERANCE  # training really changed the weights the comparison reads
    histories = split().test.histories
    scores = one.score(histories)
    one.net_.load_state_dict({k: torch.from_numpy(v) for k, v in ranks[0].items()})
    score_diff = float(np.abs(one.score(histories) - scores).max())
    assert score_diff < SCORE_TOLERANCE, f"scores differ by {score_diff:.2e}"
    report = one.training_report() or {}
    assert states[0] == states[1] == {k: report[k] for k in ("epoch", "stopped", "best_epoch")}


def test_a_budget_on_one_rank_stops_every_rank_together(runs: Path) -> None:
    """Rank 1 alone has a budget. Were the stop not agreed, rank 0 would wait forever for rank 1's
    gradients (the run would time out); agreed, both stop at the same step for rank 1's reason."""
    for scenario, reason in (("time", "time"), ("cpu", "cpu-time")):
        states = [json.loads((runs / f"{scenario}{r}.json").read_text()) for r in range(2)]
        assert states[0] == states[1]
        assert states[0]["stopped"] == reason and 0 < int(states[0]["epoch"]) < 400
        ranks = [dict(np.load(runs / f"{scenario}{r}.npz")) for r in range(2)]
        assert max_diff(ranks[0], ranks[1]) == 0.0  # the same number of steps on both


@pytest.mark.slow
def test_cli_train_nproc_2_writes_one_run(tmp_path: Path) -> None:
    """`soutui train --nproc 2`: torchrun, 2 gloo ranks, one run directory written by rank 0 alone."""
    rng = np.random.default_rng(0)
    lines = [f"u{u} " + " ".join(f"i{x}" for x in (int(rng.integers(N_ITEMS)) + np.arange(12)) % N_ITEMS)
             for u in range(120)]  # fmt: skip
    (tmp_path / "tiny.txt").write_text("\n".join(lines) + "\n")
    env = {**os.environ, "SOUTUI_HOME": str(tmp_path / "home"), "OMP_NUM_THREADS": "1"}
    soutui = [sys.executable, "-m", "soutui.cli"]
    imp = [*soutui, "data", "import", "s3rec", "--file", str(tmp_path / "tiny.txt"), "--name", "tiny"]
    subprocess.run(imp, env=env, check=True, capture_output=True, timeout=120)
    sets = [
        f"--set={k}={v}" for k, v in {"epochs": 2, "d_model": 16, "max_len": 10, "cooc_neighbors": 0}.items()
    ]
    run = tmp_path / "run"
    cmd = [
        *soutui,
        "train",
        "--nproc",
        "2",
        "--dataset",
        "tiny",
        "--output",
        str(run),
        "--no-onnx",
        "--json",
        *sets,
    ]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    rec = json.loads(done.stdout)  # one record on stdout: rank 1 prints nothing
    assert rec["distributed"]["processes"] == 2 and rec["training"]["epoch"] == 2
    assert json.loads((run / "record.json").read_text())["distributed"]["processes"] == 2
    assert (run / "ckpt" / "last.pt").exists() and rec["metrics"]["test"]["NDCG@10"] > 0.1


if __name__ == "__main__":
    worker(Path(sys.argv[1]), sys.argv[2])
