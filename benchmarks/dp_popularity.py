"""What the private popularity release of a DP bundle costs: test NDCG@10 / HR@10 of popularity from exact
counts against the release (soutui.training.dp_counts) at several epsilons and per-user bounds.

Protocol: Amazon Beauty (../shared/data/amazon-beauty/Beauty.txt), leave-one-out, full ranking over all
items, pessimistic ties, every test user; counts on the training part; delta 1e-5; each private row is
the mean over `--repeats` seeded noise draws (its std beside it). Also the top-10 overlap with the exact
top 10 (what the trending fallback shows).

    .venv/bin/python benchmarks/dp_popularity.py --json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from soutui.data.sequences import SequenceData, leave_one_out
from soutui.evaluation.protocol import evaluate_full_ranking, ranking_metrics
from soutui.models.popularity import Popularity
from soutui.training.dp_counts import bounded_counts, private_popularity

BEAUTY = Path(__file__).resolve().parents[2] / "shared" / "data" / "amazon-beauty" / "Beauty.txt"


def load_beauty(path: Path) -> SequenceData:
    users, seqs = [], []
    for line in path.read_text().splitlines():
        parts = line.split()
        users.append(parts[0])
        seqs.append(np.array([int(x) - 1 for x in parts[1:]], np.int64))  # ids 1..12101 -> 0..12100
    n_items = int(max(int(s.max()) for s in seqs)) + 1
    return SequenceData(np.array([str(i) for i in range(n_items)], dtype=object), np.array(users, dtype=object), seqs)


def metrics(scores: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    """The protocol's metrics for a history-blind model (one score vector for every user), fast: each
    item's pessimistic rank (items scoring >= it, minus itself) is computed once, then looked up."""
    ordered = np.sort(scores)
    at_least = len(scores) - np.searchsorted(ordered, scores, side="left")  # items scoring >= each item
    return ranking_metrics((at_least - 1)[targets], (10,))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(BEAUTY))
    ap.add_argument("--epsilons", default="0.5,1,4")
    ap.add_argument("--max-items", default="5,20")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    split = leave_one_out(load_beauty(Path(args.data)))
    n = split.train.n_items
    exact = Popularity().fit(split.train)
    top = set(np.argsort(-exact.scores_, kind="stable")[:10].tolist())
    base = metrics(exact.scores_, split.test.targets)
    check = split.test.take(np.arange(2000))  # the fast path equals the protocol's own ranking
    slow, fast = evaluate_full_ranking(exact, check, n, (10,)), metrics(exact.scores_, check.targets)
    assert all(abs(slow[k] - fast[k]) < 1e-12 for k in fast), (slow, fast)
    rows = [{"epsilon": "inf", "max_items": "-", "NDCG@10": base["NDCG@10"], "HR@10": base["HR@10"], "top10_overlap": 10}]
    print(f"exact counts: NDCG@10 {base['NDCG@10']:.4f} HR@10 {base['HR@10']:.4f}", file=sys.stderr)
    for k in (int(x) for x in args.max_items.split(",")):  # the bound alone, without noise
        m = metrics(bounded_counts(split.train.sequences, n, k, np.random.default_rng(0)), split.test.targets)
        rows.append({"epsilon": "inf (bounded, no noise)", "max_items": k, "NDCG@10": m["NDCG@10"], "HR@10": m["HR@10"]})
        print(json.dumps(rows[-1]), file=sys.stderr)
    for eps in (float(e) for e in args.epsilons.split(",")):
        for k in (int(x) for x in args.max_items.split(",")):
            runs = []
            for seed in range(args.repeats):
                model, rec = private_popularity(split.train, eps, 1e-5, k, seed=seed)
                m = metrics(model.scores_, split.test.targets)
                overlap = len(top & set(np.argsort(-model.scores_, kind="stable")[:10].tolist()))
                runs.append((m["NDCG@10"], m["HR@10"], overlap))
            a = np.array(runs)
            row = {"epsilon": eps, "max_items": k, "achieved_epsilon": rec["epsilon"], "noise_std": round(rec["noise_std"], 2),
                   "NDCG@10": float(a[:, 0].mean()), "NDCG@10_std": float(a[:, 0].std()), "HR@10": float(a[:, 1].mean()),
                   "top10_overlap": float(a[:, 2].mean())}  # fmt: skip
            rows.append(row)
            print(json.dumps(row), file=sys.stderr)
    if args.json:
        print(json.dumps({"dataset": "amazon-beauty", "test_users": len(split.test.users), "delta": 1e-5,
                          "repeats": args.repeats, "rows": rows}, indent=1))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
