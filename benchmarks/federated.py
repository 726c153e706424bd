"""Federated SASRec (Flower) against centralised SASRec under the same total compute (issue 12 §3).

Same total compute: R rounds x 1 local epoch over every client's users = R epochs over all users,
which is what the centralised model gets (no early stopping either side; co-occurrence head and
cold-item reset off on both sides, as federated training needs). Each setting (centralised, and
federated with each N) trains once per learning rate in `--lrs`, and keeps the one with the best
validation NDCG@10: the same choice on both sides, never on test. Test: leave-one-out, full
ranking over all items, pessimistic ties, all test users. Bytes per round: the serialized
parameter tensors sent up by all clients plus the global model sent down to each.

    .venv/bin/python benchmarks/federated.py --clients 4,16 --rounds 40 --lrs 0.002,0.004 --jobs 2 --json

`--jobs` trains that many runs at once, each a process with one torch thread (the seconds are then
measured under that load).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import torch

from soutui.cli.common import print_table
from soutui.training.federated import FED_PARAMS, STRATEGIES, FederatedConfig, run_federated
from soutui.training.pipeline import Prepared, build_model, evaluate_splits, prepare

SMALL = {
    "d_model": 32,
    "n_heads": 2,
    "n_layers": 2,
    "max_len": 20,
    "batch_size": 128,
    "lr": 2e-3,
    "threads": 1,
}
_PREP: dict[tuple[str, str], Prepared] = {}


def _prepared(dataset: str, encoder: str) -> Prepared:
    if (dataset, encoder) not in _PREP:  # once per worker process
        _PREP[dataset, encoder] = prepare(dataset, encoder=encoder, progress=False)
    return _PREP[dataset, encoder]


def run_one(args: argparse.Namespace, clients: int, lr: float) -> dict[str, Any]:
    """One training run: centralised (clients 0) or federated over `clients`, at learning rate `lr`."""
    torch.set_num_threads(1)
    prep, params = _prepared(args.dataset, args.encoder), {**SMALL, "lr": lr}
    t0, c0 = time.perf_counter(), time.process_time()
    if clients == 0:
        rec = build_model("sasrec", {**params, **FED_PARAMS, "epochs": args.rounds})
        rec.fit(prep.split.train, None, content=prep.content)
        metrics, bytes_per_round = evaluate_splits(rec, prep, exclude_history=False), 0
        train_s = time.perf_counter() - t0
    else:
        cfg = FederatedConfig(clients=clients, rounds=args.rounds, params=params, strategy=args.strategy,
                              server_lr=args.server_lr, keep_moments=not args.reset_moments)  # fmt: skip
        out = run_federated(prep, cfg, progress=False)
        metrics, bytes_per_round, train_s = out["metrics"], out["bytes_per_round"], out["time"]["train_s"]
    row = {"setting": "centralised" if clients == 0 else "federated", "clients": max(clients, 1), "lr": lr,
           "valid_NDCG@10": metrics["valid"]["NDCG@10"], "NDCG@10": metrics["test"]["NDCG@10"],
           "HR@10": metrics["test"]["HR@10"], "bytes_per_round": bytes_per_round, "train_s": round(train_s, 1),
           "cpu_s": round(time.process_time() - c0, 1)}  # fmt: skip
    print(json.dumps(row), file=sys.stderr, flush=True)
    return row


def chosen(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per setting, the run with the best validation NDCG@10; ratios against the centralised one."""
    best: dict[int, dict[str, Any]] = {}
    for r in runs:
        key = 0 if r["setting"] == "centralised" else r["clients"]
        if key not in best or r["valid_NDCG@10"] > best[key]["valid_NDCG@10"]:
            best[key] = r
    rows = [best[k] for k in sorted(best)]
    base = best[0]["NDCG@10"] if 0 in best else None
    return [{**r, "ndcg_vs_centralised": round(r["NDCG@10"] / base, 3) if base else None} for r in rows]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="amazon-beauty")
    ap.add_argument("--clients", default="4,16")
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--lrs", default="0.002", help="learning rates tried per setting, chosen on validation")
    ap.add_argument("--strategy", choices=sorted(STRATEGIES), default="fedavg")
    ap.add_argument("--server-lr", type=float, default=1.0)
    ap.add_argument("--reset-moments", action="store_true", help="clients restart AdamW every round")
    ap.add_argument("--encoder", default="none", help="title encoder (none = IDs + attributes only)")
    ap.add_argument("--jobs", type=int, default=1, help="runs trained at once (one process, one thread each)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    _prepared(args.dataset, args.encoder)  # once, before the pool: its forked workers inherit it
    grid = [(n, float(lr)) for n in [0, *(int(c) for c in args.clients.split(","))] for lr in args.lrs.split(",")]
    load = os.getloadavg()
    with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        runs = list(pool.map(run_one, [args] * len(grid), *zip(*grid, strict=True)))
    rows = chosen(runs)
    if args.json:
        print(json.dumps({"protocol": vars(args), "params": SMALL, "load_average_at_start": load,
                          "runs": runs, "rows": rows}, indent=1))  # fmt: skip
    else:
        print_table(rows, ["setting", "clients", "lr", "valid_NDCG@10", "NDCG@10", "HR@10", "ndcg_vs_centralised",
                           "bytes_per_round", "train_s"])  # fmt: skip


if __name__ == "__main__":
    main()
