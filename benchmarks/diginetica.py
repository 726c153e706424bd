"""DIGINETICA sessions (SR-GNN preprocessing): next-click P@20 / MRR@20 over all items.

Protocol: train on `train_sessions.txt` (anonymous sessions; the last click of a seeded 3%
of training sessions is held out as VALIDATION for early stopping, never the test file);
evaluate every row of `test_prefixes.tsv` (prefix -> next click) with FULL ranking over all
items of the catalogue, pessimistic ties, history not excluded. P@20 = HR@20 x 100 and
MRR@20 x 100, as in SR-GNN. A target unknown to the catalogue counts as a miss. Objective:
sampled softmax with logQ correction. Training is bounded (`--cpu-minutes`, `--minutes`).

    .venv/bin/python benchmarks/diginetica.py [--cpu-minutes 15] [--minutes 20] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

import numpy as np

from soutui.data.sequences import EvalSplit, SequenceData
from soutui.evaluation.protocol import ranking_metrics, target_ranks
from soutui.training.pipeline import parse_overrides

PUBLISHED = {"SR-GNN": (50.73, 17.59), "GCE-GNN": (54.22, 19.04)}  # P@20, MRR@20
PARAMS: dict[str, Any] = {
    "loss": "sampled_softmax", "n_negatives": 2048, "d_model": 64, "n_layers": 2, "n_heads": 2, "max_len": 20,
    "dropout": 0.2, "emb_dropout": 0.2, "seen_bias": True, "item_bias": True, "use_time": False,
    "batch_size": 512, "lr": 0.002, "patience": 3, "valid_users": 5000, "cooc_neighbors": 100,
    "lr_schedule": "cosine",
}  # fmt: skip


def load(valid_frac: float = 0.03, seed: int = 0) -> tuple[SequenceData, EvalSplit, EvalSplit]:
    """(training sequences, validation split from training sessions, test split from the prefixes file)."""
    from soutui.data.datasets import find_data_dir, load_dataset
    from soutui.data.importers.diginetica import read_test_prefixes

    items, events = load_dataset("diginetica-sessions")
    data = SequenceData.from_events(events, items, event_types=("view",), group="session_id")
    data.timestamps = None  # synthetic clock: order only
    rng = np.random.default_rng(seed)
    seqs = list(data.sequences)
    cand = np.flatnonzero([len(s) >= 3 for s in seqs])
    vsel = np.sort(rng.choice(cand, int(len(cand) * valid_frac), replace=False))
    valid = EvalSplit(vsel, [seqs[u][:-1] for u in vsel], np.array([seqs[u][-1] for u in vsel]), "valid")
    for u in vsel:
        seqs[u] = seqs[u][:-1]
    train = data.with_sequences(seqs, None)
    prefixes, targets = read_test_prefixes(
        find_data_dir(dataset="diginetica-sessions") / "diginetica-sessions" / "test_prefixes.tsv"
    )
    idx = data.item_index
    hist = [np.array([idx[str(x)] for x in p if str(x) in idx], dtype=np.int64) for p in prefixes]
    tgt = np.array([idx.get(str(t), -1) for t in targets], dtype=np.int64)
    test = EvalSplit(np.arange(len(tgt)), hist, tgt, "test")
    return train, valid, test


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cpu-minutes", type=float, default=15.0)
    ap.add_argument("--minutes", type=float, default=20.0, help="wall-clock training budget")
    ap.add_argument("--set", dest="overrides", action="append", default=[], help="key=value model parameter")
    ap.add_argument(
        "--limit-test", type=int, default=0, help="evaluate only the first N test rows (smoke runs)"
    )
    ap.add_argument(
        "--limit-train", type=int, default=0, help="train on the first N sessions only (smoke runs)"
    )
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    import torch

    from soutui.models.sasrec_recommender import SASRecRecommender

    torch.set_num_threads(args.threads)
    train, valid, test = load()
    if args.limit_train:
        train = train.with_sequences(train.sequences[: args.limit_train], None)
    if args.limit_test:
        test = test.take(np.arange(min(args.limit_test, len(test))))
    params = {**PARAMS, "max_cpu_minutes": args.cpu_minutes, "max_minutes": args.minutes, "progress": not args.json,
              "threads": args.threads, **parse_overrides(args.overrides)}  # fmt: skip
    model = SASRecRecommender(**params)
    t0, c0 = time.perf_counter(), time.process_time()
    model.fit(train, valid)
    train_s, cpu_s = time.perf_counter() - t0, time.process_time() - c0
    known = test.targets >= 0
    known_split = test.take(np.flatnonzero(known))

    def evaluate_test() -> dict[str, float]:
        ranks = np.full(len(test), train.n_items, dtype=np.int64)  # unknown target = miss
        ranks[known], _ = target_ranks(model, known_split, progress=not args.json)
        return ranking_metrics(ranks, (20,))

    net = model.net_
    assert net is not None
    alone = None
    if net.cooc_idx is not None:  # the same network with head weight 0 = the transformer alone
        with model.cooc_weight(0.0):
            a = evaluate_test()
        alone = {"P@20": round(100 * a["HR@20"], 2), "MRR@20": round(100 * a["MRR@20"], 2)}
    m = evaluate_test()
    st = model.state_
    assert st is not None
    res = {
        "protocol": __doc__.split("\n\n")[1].replace("\n", " "),
        "P@20": round(100 * m["HR@20"], 2), "MRR@20": round(100 * m["MRR@20"], 2),
        "transformer_alone": alone, "cooc_weight": float(net.cooc_alpha), "cooc_valid": model.cooc_valid_,
        "test_rows": len(test), "unknown_targets": int((~known).sum()), "items": train.n_items,
        "train_s": round(train_s, 1), "train_cpu_s": round(cpu_s, 1), "epochs": st.epoch, "best_epoch": st.best_epoch,
        "stopped": st.stopped, "valid_ndcg10_best": st.best_metric, "params": params,
        "load_avg_1m": round(os.getloadavg()[0], 2), "published": PUBLISHED,
    }  # fmt: skip
    if args.json:
        json.dump(res, sys.stdout, indent=1, default=str)
        return 0
    print(res["protocol"])
    if alone:
        print(f"transformer alone (head weight 0): P@20 {alone['P@20']:.2f}  MRR@20 {alone['MRR@20']:.2f}")
    print(f"soutui SASRec (sampled softmax + logQ, co-occurrence head weight {res['cooc_weight']:g}): P@20 {res['P@20']:.2f}  MRR@20 {res['MRR@20']:.2f}  "
          f"({res['test_rows']} test rows, {res['items']} items; {res['epochs']} epochs, train {train_s:.0f} s wall / "
          f"{cpu_s:.0f} s CPU, stopped: {st.stopped}, load {res['load_avg_1m']})")  # fmt: skip
    for k, (p, r) in PUBLISHED.items():
        print(f"{k} (published): P@20 {p:.2f}  MRR@20 {r:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
